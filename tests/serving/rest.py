"""TF Serving's REST predict API, in Python, for the requests this model gets.

No TF Serving binary is reachable here (it is not on PyPI or in Debian; it
ships as the `tensorflow/serving` Docker image), so the tests check what a
server would receive and answer, with the JSON rules of TF Serving's
`tensorflow_serving/util/json_tensor.cc`:

- Row format `{"instances": [...]}`: with one input, each element is that
  input's value for one item (`{"b64": "..."}` for a DT_STRING input is
  base64-decoded); elements may also be objects naming inputs
  (`{"image_bytes": {"b64": "..."}}`). Columnar format `{"inputs": ...}` is
  the same, unrolled.
- Response: row format -> `{"predictions": [...]}`, a list of objects (one key
  per output) when there are several outputs, plain values when there is one;
  columnar -> `{"outputs": {...}}`. DT_STRING outputs whose name ends in
  `_bytes` are written as `{"b64": ...}`, others as text. Floats are written
  in their shortest round-trip form; NaN as the bare token `NaN` (which
  Python's json module reads).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Mapping, Sequence

import numpy as np

B64 = "b64"
BYTES_SUFFIX = "_bytes"


class RestError(ValueError):
    """What TF Serving would answer with HTTP 400 and {"error": message}."""


def predict_body(images: Sequence[bytes], input_name: str | None = None) -> str:
    """The JSON a client POSTs to /v1/models/<name>:predict for these encoded images (row format)."""
    values = [{B64: base64.b64encode(image).decode("ascii")} for image in images]
    instances = values if input_name is None else [{input_name: value} for value in values]
    return json.dumps({"instances": instances})


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64), str)


def _string_value(value: Any) -> bytes:
    if _is_b64(value):
        try:
            return base64.b64decode(value[B64], validate=True)
        except (binascii.Error, ValueError):
            raise RestError("Unable to base64 decode") from None
    if isinstance(value, str):
        return value.encode()
    raise RestError(f"JSON Value: {json.dumps(value)} is not of expected type: string")


def _tensor(values: Any, dtype: str) -> np.ndarray:
    if dtype == "string":
        def convert(item):
            return [convert(v) for v in item] if isinstance(item, list) else _string_value(item)
        return np.array(convert(values), dtype=object)
    return np.asarray(values, dtype=dtype)


def decode_predict_request(body: str | bytes, inputs: Mapping[str, str]) -> tuple[dict[str, np.ndarray], str]:
    """Request body -> ({input name: array}, "row" or "columnar"); `inputs` maps names to dtypes."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as error:
        raise RestError(f"JSON Parse error: {error}") from None
    if not isinstance(doc, dict):
        raise RestError("JSON Value: is not object")
    if ("instances" in doc) == ("inputs" in doc):
        raise RestError("Missing 'inputs' or 'instances' key" if "instances" not in doc else
                        "expecting only one of 'inputs' or 'instances' keys")
    names = sorted(inputs)
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise RestError("Expecting 'instances' to be a non-empty list")
        named = isinstance(instances[0], dict) and not _is_b64(instances[0])
        if not named and len(names) > 1:
            raise RestError("instances is a plain list, but expecting list of objects as multiple "
                            "input tensors required as per tensorinfo_map")
        columns: dict[str, list] = {name: [] for name in names}
        for position, item in enumerate(instances):
            if named:
                if not isinstance(item, dict) or _is_b64(item) or sorted(item) != names:
                    raise RestError(f"Failed to process element: {position} of 'instances' list. "
                                    f"JSON object must only have keys: {','.join(names)}")
                for name in names:
                    columns[name].append(item[name])
            else:
                if isinstance(item, dict) and not _is_b64(item):
                    raise RestError(f"Expecting value/list but got object at item {position} of input list")
                columns[names[0]].append(item)
        return {name: _tensor(columns[name], inputs[name]) for name in names}, "row"
    given = doc["inputs"]
    if not isinstance(given, dict) or _is_b64(given):
        if len(names) > 1:
            raise RestError("inputs is a plain value/list, but expecting an object")
        given = {names[0]: given}
    missing = [name for name in names if name not in given]
    if missing:
        raise RestError(f"Missing named input: {missing[0]} in 'inputs' object.")
    return {name: _tensor(given[name], inputs[name]) for name in names}, "columnar"


def _json_value(name: str, value: Any) -> Any:
    if isinstance(value, (bytes, np.bytes_)):
        if name.endswith(BYTES_SUFFIX):
            return {B64: base64.b64encode(bytes(value)).decode("ascii")}
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (np.floating, float)):
        # float32 written in its shortest round-trip form, as TF Serving does.
        return float(str(value)) if isinstance(value, np.float32) else float(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _nested(name: str, array: Any) -> Any:
    if not isinstance(array, np.ndarray):
        return _json_value(name, array)
    if array.ndim == 0:
        return _json_value(name, array[()])
    return [_nested(name, item) for item in array]


def encode_predict_response(outputs: Mapping[str, Any], request_format: str = "row") -> str:
    """Signature outputs -> the JSON body TF Serving answers with."""
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    if request_format == "columnar":
        body = {name: _nested(name, a) for name, a in arrays.items()}
        payload = {"outputs": body[next(iter(body))] if len(body) == 1 else body}
    else:
        sizes = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
        if len(sizes) != 1:
            raise RestError("Tensor outputs of a row-format request must share their first dimension")
        if len(arrays) == 1:
            name, array = next(iter(arrays.items()))
            predictions = _nested(name, array)
        else:
            predictions = [{name: _nested(name, a[i]) for name, a in sorted(arrays.items())}
                           for i in range(sizes.pop())]
        payload = {"predictions": predictions}
    return json.dumps(payload, allow_nan=True)
