"""Export: the cross-validated models as one SavedModel, pushed to TF Serving when blessed.

TFX's Evaluator + Pusher in one stage:
1. the fold models written by the train stage (`components/train/outputs.py`,
   in fold order: fold 0, 1, ...) are loaded and written as ONE
   SavedModel averaging their probabilities (`serving/signature.py` says why
   and what the signatures are: `serving_default`, `predict_images`, and `explain`,
   the fold probabilities and Grad-CAM the app's page shows); `members` picks one fold instead. With
   `recalibrate` (the default), logistic recalibration fitted on the logit of
   the out-of-fold probabilities (every image scored by the fold model that
   did not train on it; all repeats pooled) is applied to the logit of the
   served probability inside the graph, so TF Serving serves calibrated risks
   and the threshold applies to them; where the fit fails or its slope is not
   positive (outcomes separated by few deaths, or predictions ranking the
   wrong way round) nothing is recalibrated and the card says why (evaluate fits it,
   `evaluation.json`'s `development`, with the development case mix the card carries);
2. the SavedModel is loaded back and checked against the Keras models on a
   test image (within 1e-5), so a broken graph is never pushed;
3. the model is "blessed" when the lower end of the 95% bootstrap interval of the evaluation's pooled
   out-of-fold ROC AUC (`metrics.roc_auc.ci_low`; with repeated CV, `repeated_cv.metrics.roc_auc.ci_low`, the
   interval of the mean over repeats) is at least `bless_min_roc_auc`: blessing asks for evidence that the
   model ranks well, which a point estimate on a few patients is not; a missing or NaN value does not bless;
4. its model card (`components/model_card.py`) and TF Serving warmup
   requests (`serving/warmup.py`) are written into `assets.extra/`;
5. a blessed model is copied to `<serving_dir>/<model_name>/<version>/`,
   TF Serving's layout, with version = largest existing + 1, atomically
   (`serving/push.py`: a hidden temporary copy renamed into place, so TF
   Serving never sees a half-written version and none is ever overwritten).
   A model that is not blessed never reaches `model_name`: with `push_demo`
   (the default) it goes to `demo_model_name` instead, its status and card
   saying "DEMO — not blessed for use: <reason>", so a run on the sample or
   without real weights still ends with a model a server can load and a
   client can try; without `push_demo` it is not pushed at all.

The artifact holds `saved_model/` (always, pushed or not: `pipeline.score`
can use it) and `export.json` (members with sha256, metrics, thresholds,
blessed, reason, status, pushed name, version and path).

Like every stage, export is cached: re-running with the same models, metrics
and parameters reuses the artifact and pushes nothing new.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from common import files
from common.errors import PipelineError
from components import base, model_card
from components.evaluate import outputs as evaluate_outputs
from components.train import outputs as train_outputs
from serving import push as serving_push
from serving import contract, signature, warmup
from images import preprocessing

EXPORT_JSON = "export.json"
SAVED_MODEL_DIR = "saved_model"
DEFAULT_MODEL_NAME = "covid_cxr_mortality"
DEMO_SUFFIX = "_demo"
DEMO_STATUS = "DEMO — not blessed for use: {reason}"
BLESSING_METRIC = "roc_auc_ci_low"
VERIFY_TOLERANCE = 1e-5


# ---------------------------------------------------------------- members
def find_fold_models(train_dir: Path) -> list[Path]:
    """The train stage's fold models, in fold order (else every model file of that name below)."""
    train_dir = Path(train_dir)
    found = train_outputs.fold_model_paths(train_dir) or list(train_dir.rglob(train_outputs.MODEL))
    found.sort(key=lambda p: _natural_key(p.relative_to(train_dir)))
    if not found:
        raise PipelineError(f"export: no {train_outputs.MODEL} under {train_dir}")
    return found


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def select_members(paths: Sequence[Path], members: str | int) -> list[Path]:
    """'all' -> every fold model (the ensemble); an integer -> that one fold model."""
    if members == "all":
        return list(paths)
    index = int(members)
    if not 0 <= index < len(paths):
        raise PipelineError(f"export: members={members} but the train stage has {len(paths)} models")
    return [paths[index]]


def load_models(paths: Sequence[Path]):
    import keras

    import models  # noqa: F401  (registers the custom layers load_model needs)
    from models.precision import as_float32
    return [as_float32(keras.models.load_model(path, compile=False)) for path in paths]


# ---------------------------------------------------------------- blessing
def read_metrics(evaluation_dir: Path) -> dict[str, float]:
    """`evaluation.json`'s metrics as {name: value}, taking the `estimate` where a metric has one."""
    path = Path(evaluation_dir) / evaluate_outputs.EVALUATION_NAME
    if not path.is_file():
        raise PipelineError(f"export: {path} does not exist")
    metrics = json.loads(path.read_text()).get("metrics", {})
    flat = {}
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            value = value.get("estimate")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def blessing_evidence(evaluation: Mapping[str, Any]) -> tuple[float | None, str]:
    """(the value blessing compares, what it is): the lower end of the pooled out-of-fold ROC AUC's 95% interval,
    of the mean over repeats when the cross-validation was repeated."""
    repeated = evaluation.get("repeated_cv")
    if repeated:
        return (repeated["metrics"]["roc_auc"]["ci_low"],
                f"lower end of the 95% bootstrap interval of the pooled out-of-fold ROC AUC averaged over "
                f"{repeated['repeats']} repeats of the cross-validation")
    return (evaluation.get("metrics", {}).get("roc_auc", {}).get("ci_low"),
            "lower end of the 95% bootstrap interval of the pooled out-of-fold ROC AUC")


def bless(metrics: Mapping[str, float] | None, thresholds: Mapping[str, float]) -> tuple[bool, str]:
    """(blessed, reason): every thresholded metric present, finite and >= its minimum."""
    if not thresholds:
        return True, "no thresholds set"
    if metrics is None:
        return False, "no evaluation to compare with the thresholds"
    passed, failed = [], []
    for name, minimum in sorted(thresholds.items()):
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            failed.append(f"{name} is {'missing' if value is None else value} (needs >= {minimum:g})")
        elif value < minimum:
            failed.append(f"{name} {value:.4f} < {minimum:g}")
        else:
            passed.append(f"{name} {value:.4f} >= {minimum:g}")
    if failed:
        return False, "; ".join(failed)
    return True, "; ".join(passed)


# ---------------------------------------------------------------- export
def probe_image_png(size: int) -> bytes:
    """A deterministic X-ray-like 8-bit PNG, not square, to check the served graph against Keras."""
    from PIL import Image
    height, width = int(size * 1.5), int(size * 1.25)
    y, x = np.mgrid[0:height, 0:width]
    gray = 128 + 70 * np.sin(x / 9.0) * np.cos(y / 13.0) + 40 * (x / width - 0.5)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def verify(saved_model_dir: Path, server: signature.EnsembleServer) -> float:
    """Largest |served - Keras| probability on a test image; raises above VERIFY_TOLERANCE."""
    import tensorflow as tf

    encoded = probe_image_png(server.image_size)
    loaded = tf.saved_model.load(str(saved_model_dir))
    served = loaded.signatures[contract.DEFAULT_SIGNATURE](**{contract.INPUT_NAME: tf.constant([encoded])})
    expected = server.probabilities(preprocessing.preprocess(tf.constant(encoded), server.image_size)[None])
    if served[contract.ERROR].numpy()[0]:
        raise PipelineError(f"export: the served graph rejected its test image: "
                                 f"{served[contract.ERROR].numpy()[0].decode()}")
    gap = float(np.max(np.abs(served[contract.PROBABILITY].numpy() - expected.numpy())))
    if not gap <= VERIFY_TOLERANCE:
        raise PipelineError(f"export: the SavedModel differs from the Keras models by {gap:g} "
                                 f"(tolerance {VERIFY_TOLERANCE:g}); nothing pushed")
    return gap


def export_saved_model(model_paths: Sequence[Path], saved_model_dir: Path, threshold: float = 0.5,
                       recalibration: tuple[float, float] | None = None) -> dict:
    """Load the Keras models, write the SavedModel, check it; returns facts for the record."""
    loaded = load_models(model_paths)
    server = signature.write_saved_model(loaded, saved_model_dir, threshold=threshold, recalibration=recalibration)
    gap = verify(saved_model_dir, server)
    return {"image_size": server.image_size, "threshold": server.threshold, "verify_max_abs_diff": gap,
            "gradcam": server.probes is not None}


# ---------------------------------------------------------------- recalibration
def recalibration_plan(evaluation: Mapping[str, Any] | None, recalibrate: bool) -> dict[str, Any]:
    """The recalibration evaluate fitted on the out-of-fold predictions (`evaluation.json`'s `development`), or
    why none is applied."""
    if not recalibrate:
        return {"applied": False, "reason": "turned off (--norecalibrate)", "intercept": None, "slope": None}
    fitted = ((evaluation or {}).get("development") or {}).get("recalibration")
    if fitted is None:
        return {"applied": False, "reason": "no evaluation to fit it on", "intercept": None, "slope": None}
    return fitted


# ---------------------------------------------------------------- component
def push_plan(blessed: bool, reason: str, model_name: str, demo_model_name: str, push_demo: bool,
              serving_dir: str | None) -> tuple[str, str | None, str]:
    """(the name the model is served under, the name to push it to now or None, its status sentence).

    Only a blessed model is ever served as `model_name`; one that is not goes to `demo_model_name` when
    `push_demo`, else nowhere."""
    if demo_model_name == model_name:
        raise PipelineError(f"export: --demo_model_name must differ from --model_name ({model_name!r}): a model "
                            "that is not blessed must never be served under the real name")
    served_name = model_name if blessed else demo_model_name
    status = f"blessed: {reason}" if blessed else DEMO_STATUS.format(reason=reason) if push_demo else \
        f"not blessed: {reason}"
    if not serving_dir:
        return served_name, None, f"{status}; no serving_dir set: nothing pushed"
    if not blessed and not push_demo:
        return served_name, None, f"{status}; nothing pushed"
    return served_name, served_name, status


def _evaluation_record(inputs: Mapping[str, base.Artifact]) -> dict | None:
    return evaluate_outputs.read_evaluation(inputs["evaluation"].path) if "evaluation" in inputs else None


def _data_snapshot(inputs: Mapping[str, base.Artifact]) -> dict | None:
    if "data" not in inputs:
        return None
    return {**inputs["data"].source.describe(), "content_sha256": inputs["data"].fingerprint}


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path) -> Mapping[str, Any]:
    all_models = find_fold_models(inputs["model"].path)
    members = select_members(all_models, params.get("members", "all"))
    evaluation = _evaluation_record(inputs)
    if evaluation is not None:
        evidence, blessed_on = blessing_evidence(evaluation)
        metrics = {**read_metrics(inputs["evaluation"].path), BLESSING_METRIC: evidence}
        metrics_source = str(inputs["evaluation"].path)
    else:
        metrics, metrics_source = params.get("metrics"), "parameters"
        blessed_on = f"{BLESSING_METRIC} as given in the export parameters"
    thresholds = {BLESSING_METRIC: params["bless_min_roc_auc"]}
    blessed, reason = bless(metrics, thresholds)
    recalibration = recalibration_plan(evaluation, params.get("recalibrate", True))
    model_name = params.get("model_name", DEFAULT_MODEL_NAME)
    served_name, push_to, status = push_plan(
        blessed, reason, model_name, params.get("demo_model_name", model_name + DEMO_SUFFIX),
        params.get("push_demo", True), params.get("serving_dir"))

    saved_model_dir = out_dir / SAVED_MODEL_DIR
    facts = export_saved_model(members, saved_model_dir, params.get("threshold", 0.5),
                               (recalibration["intercept"], recalibration["slope"]) if recalibration["applied"]
                               else None)
    record = {
        "members": [{"path": str(p), "sha256": files.sha256_file(p)} for p in members],
        "ensemble": "mean of member probabilities" if len(members) > 1 else "single model",
        **facts,
        "signatures": {
            contract.DEFAULT_SIGNATURE: {"inputs": {contract.INPUT_NAME: "string [None]"},
                                          "outputs": {contract.PROBABILITY: "float32 [None]",
                                                      contract.CLASS: "int64 [None]",
                                                      contract.ERROR: "string [None]"}},
            contract.IMAGES_SIGNATURE: {"inputs": {contract.IMAGES_INPUT_NAME: "float32 [None, S, S, 3]"},
                                         "outputs": {contract.PROBABILITY: "float32 [None]",
                                                     contract.CLASS: "int64 [None]"}},
            contract.EXPLAIN_SIGNATURE: {"inputs": {contract.INPUT_NAME: "string [None]"},
                                          "outputs": {contract.PROBABILITY: "float32 [None]",
                                                      contract.CLASS: "int64 [None]",
                                                      contract.ERROR: "string [None]",
                                                      contract.FOLD_PROBABILITIES: "float32 [None, members]",
                                                      contract.MODEL_INPUT: "uint8 [None, S, S, 3]",
                                                      **({contract.GRADCAM: "float32 [None, S, S]"}
                                                         if facts["gradcam"] else {})}},
        },
        "metrics": metrics, "metrics_source": metrics_source, "bless_thresholds": thresholds,
        "blessed_on": blessed_on, "recalibration": recalibration,
        "blessed": blessed, "reason": reason, "status": status, "demo": not blessed and push_to is not None,
        "model_name": served_name, "pushed_version": None, "pushed_to": None,
    }
    model_card.write(saved_model_dir, model_card.build(
        model_name=served_name, status=status, blessed=blessed, export_record=record,
        train_summary=train_outputs.read_summary(inputs["model"].path),
        predictions=train_outputs.read_predictions(inputs["model"].path),
        evaluation=evaluation, data=_data_snapshot(inputs),
        case_mix=((evaluation or {}).get("development") or {}).get("case_mix")))
    warmup.write_warmup_requests(saved_model_dir, served_name, warmup.synthetic_chest_images())

    if push_to:
        version, path = serving_push.push(saved_model_dir, Path(params["serving_dir"]), push_to)
        record.update(pushed_version=version, pushed_to=str(path))
    files.write_json_atomic(out_dir / EXPORT_JSON, record)
    return {"members": len(members), "blessed": blessed, "demo": record["demo"],
            "pushed_version": record["pushed_version"], "image_size": facts["image_size"]}


def read_export(artifact: base.Artifact) -> dict:
    return json.loads((artifact.path / EXPORT_JSON).read_text())


def _summary(artifact: base.Artifact) -> str:
    record = read_export(artifact)
    what = f"{len(record['members'])} model(s), {record['ensemble']}; {record['status']}"
    if record["pushed_to"]:
        return f"{what}: pushed version {record['pushed_version']} to {record['pushed_to']}"
    return what


SPEC = base.ComponentSpec(name="export", run=run, summary=_summary)
