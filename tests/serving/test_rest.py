"""TF Serving's REST JSON rules, as `tests/serving/rest.py` reproduces them (no TensorFlow needed)."""

import base64
import json

import numpy as np
import pytest

from tests.serving import rest

INPUTS = {"image_bytes": "string"}


def test_the_body_a_client_sends():
    body = json.loads(rest.predict_body([b"\xff\xd8\xffabc", b"\x89PNG"]))
    assert body == {"instances": [{"b64": base64.b64encode(b"\xff\xd8\xffabc").decode()},
                                  {"b64": base64.b64encode(b"\x89PNG").decode()}]}


@pytest.mark.parametrize("body", [
    '{"instances": [{"b64": "AAEC"}, {"b64": "/w=="}]}',
    '{"instances": [{"image_bytes": {"b64": "AAEC"}}, {"image_bytes": {"b64": "/w=="}}]}',
    '{"inputs": [{"b64": "AAEC"}, {"b64": "/w=="}]}',
    '{"inputs": {"image_bytes": [{"b64": "AAEC"}, {"b64": "/w=="}]}}',
])
def test_row_and_columnar_requests_give_the_same_tensor(body):
    tensors, _ = rest.decode_predict_request(body, INPUTS)
    assert list(tensors) == ["image_bytes"]
    assert list(tensors["image_bytes"]) == [b"\x00\x01\x02", b"\xff"]


@pytest.mark.parametrize("body,message", [
    ("not json", "JSON Parse error"),
    ('{"signature_name": "serving_default"}', "Missing 'inputs' or 'instances'"),
    ('{"instances": []}', "non-empty"),
    ('{"instances": [{"b64": "@@@"}]}', "base64"),
    ('{"instances": [{"other": {"b64": "AA=="}}]}', "must only have keys"),
    ('{"instances": [1]}', "not of expected type"),
])
def test_malformed_requests_are_refused_with_tf_servings_reason(body, message):
    with pytest.raises(rest.RestError, match=message):
        rest.decode_predict_request(body, INPUTS)


def test_the_answer_lists_one_object_per_item_with_nan_for_failures():
    outputs = {"probability_of_death": np.array([0.25, np.nan], np.float32),
               "class": np.array([0, -1], np.int64),
               "error": np.array([b"", b"not a JPEG or PNG"], object)}
    text = rest.encode_predict_response(outputs)
    assert "NaN" in text
    answer = json.loads(text)
    assert answer["predictions"][0] == {"class": 0, "error": "", "probability_of_death": 0.25}
    assert answer["predictions"][1]["error"] == "not a JPEG or PNG" and np.isnan(answer["predictions"][1]["probability_of_death"])
    columnar = json.loads(rest.encode_predict_response(outputs, "columnar"))
    assert columnar["outputs"]["class"] == [0, -1]


def test_outputs_named_bytes_are_base64():
    answer = json.loads(rest.encode_predict_response({"thumb_bytes": np.array([b"\x00\xff"], object)}))
    assert answer == {"predictions": [{"b64": "AP8="}]}
