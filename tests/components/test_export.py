"""Export: blessing, TF Serving's version folders, atomic pushes, the averaged fold models."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from common.errors import PipelineError
from tensorflow_serving.apis import prediction_log_pb2

from components import base, export, model_card
from components import configs
from serving import contract, push, warmup
from tests.serving import helpers

THRESHOLDS = {"roc_auc": 0.7}


@pytest.fixture(scope="module")
def train_artifact(tmp_path_factory):
    """A train stage's output: fold_0..fold_2/model.keras."""
    folder = tmp_path_factory.mktemp("train")
    helpers.write_folds(folder, k=3)
    helpers.write_train_records(folder, k=3)
    return helpers.fake_artifact(folder, "train")


def _params(serving_dir, roc_auc, **overrides):
    params = {"serving_dir": str(serving_dir), "model_name": "covid", "demo_model_name": "covid_demo",
              "push_demo": True, "bless_min_roc_auc": THRESHOLDS["roc_auc"],
              "threshold": 0.5, "members": "all", "metrics": {"roc_auc_ci_low": roc_auc}}
    params.update(overrides)
    return params


def test_blessing_compares_every_threshold():
    assert export.bless({"roc_auc": 0.81}, THRESHOLDS) == (True, "roc_auc 0.8100 >= 0.7")
    assert export.bless({"roc_auc": 0.69}, THRESHOLDS) == (False, "roc_auc 0.6900 < 0.7")
    assert not export.bless({"roc_auc": float("nan")}, THRESHOLDS)[0]
    assert export.bless({}, THRESHOLDS) == (False, "roc_auc is missing (needs >= 0.7)")
    assert export.bless(None, THRESHOLDS)[0] is False
    assert export.bless({"roc_auc": 0.9, "accuracy": 0.5}, {"roc_auc": 0.7, "accuracy": 0.6})[0] is False


def test_metrics_are_read_from_the_evaluation(tmp_path):
    (tmp_path / "evaluation.json").write_text(json.dumps(
        {"metrics": {"roc_auc": {"estimate": 0.75, "fold_mean": 0.7}, "accuracy": 0.8, "note": "x"}}))
    assert export.read_metrics(tmp_path) == {"roc_auc": 0.75, "accuracy": 0.8}


def test_below_threshold_nothing_is_pushed_without_push_demo(tmp_path, train_artifact):
    serving_dir = tmp_path / "serving"
    artifact, _ = base.execute(export.SPEC, {"model": train_artifact}, _params(serving_dir, 0.55, push_demo=False),
                               tmp_path / "runs")
    record = export.read_export(artifact)
    assert record["blessed"] is False and record["reason"] == "roc_auc_ci_low 0.5500 < 0.7"
    assert record["pushed_version"] is None and not serving_dir.exists()
    assert (artifact.path / "saved_model" / "saved_model.pb").is_file()  # still there to inspect or score
    assert "not blessed: roc_auc_ci_low 0.5500 < 0.7; nothing pushed" in export.SPEC.summary(artifact)


def test_a_model_that_is_not_blessed_is_pushed_to_the_demo_name_only(tmp_path, train_artifact):
    serving_dir = tmp_path / "serving"
    artifact, _ = base.execute(export.SPEC, {"model": train_artifact}, _params(serving_dir, 0.55), tmp_path / "runs")
    record = export.read_export(artifact)
    assert record["status"] == "DEMO — not blessed for use: roc_auc_ci_low 0.5500 < 0.7" and record["demo"] is True
    assert record["model_name"] == "covid_demo" and record["pushed_to"] == str(serving_dir / "covid_demo" / "1")
    assert sorted(p.name for p in serving_dir.iterdir()) == ["covid_demo"]  # never the real name
    assert "DEMO — not blessed for use: roc_auc_ci_low 0.5500 < 0.7: pushed version 1" in export.SPEC.summary(artifact)
    card = model_card.read(serving_dir / "covid_demo" / "1")
    assert card["model"]["status"] == record["status"] and card["model"]["name"] == "covid_demo"
    assert "**DEMO — not blessed for use: roc_auc_ci_low 0.5500 < 0.7**" in (
        serving_dir / "covid_demo" / "1" / model_card.MARKDOWN_NAME).read_text()
    blessed, _ = base.execute(export.SPEC, {"model": train_artifact}, _params(serving_dir, 0.8), tmp_path / "runs")
    assert export.read_export(blessed)["demo"] is False
    assert push.existing_versions(serving_dir / "covid") == [1] and push.existing_versions(
        serving_dir / "covid_demo") == [1]  # a blessed model goes to the real name only


def test_the_push_plan_never_serves_an_unblessed_model_under_the_real_name():
    plan = export.push_plan
    assert plan(True, "roc_auc 0.8 >= 0.7", "m", "m_demo", True, "/s") == ("m", "m", "blessed: roc_auc 0.8 >= 0.7")
    assert plan(False, "roc_auc 0.6 < 0.7", "m", "m_demo", True, "/s") == (
        "m_demo", "m_demo", "DEMO — not blessed for use: roc_auc 0.6 < 0.7")
    assert plan(False, "r", "m", "m_demo", False, "/s") == ("m_demo", None, "not blessed: r; nothing pushed")
    assert plan(True, "r", "m", "m_demo", True, None) == ("m", None, "blessed: r; no serving_dir set: nothing pushed")


def test_the_demo_name_must_differ_from_the_real_one(tmp_path, train_artifact):
    with pytest.raises(PipelineError, match="--demo_model_name must differ from --model_name"):
        base.execute(export.SPEC, {"model": train_artifact},
                     _params(tmp_path / "s", 0.55, demo_model_name="covid"), tmp_path / "runs")


def test_the_warmup_requests_hold_generated_images_the_served_model_answers(tmp_path, train_artifact):
    import keras

    import models  # noqa: F401
    serving_dir = tmp_path / "serving"
    base.execute(export.SPEC, {"model": train_artifact}, _params(serving_dir, 0.8), tmp_path / "runs")
    version = serving_dir / "covid" / "1"
    records = list(tf.data.TFRecordDataset(str(version / warmup.WARMUP_FILE)))
    assert len(records) == 2  # the generated picture as PNG, then as JPEG
    loaded = tf.saved_model.load(str(version))
    folds = [keras.models.load_model(p) for p in export.find_fold_models(train_artifact.path)]
    for record, expected in zip(records, warmup.synthetic_chest_images()):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "covid" and request.model_spec.signature_name == "serving_default"
        images = tf.make_ndarray(request.inputs["image_bytes"])
        assert images.shape == (1,) and images[0] == expected
        served = loaded.signatures[request.model_spec.signature_name](image_bytes=tf.constant(images))
        assert served["error"].numpy()[0] == b""
        assert float(served["probability_of_death"][0]) == pytest.approx(
            helpers.keras_probabilities(folds, images[0]), abs=1e-5)


def test_the_generated_warmup_pictures_decode_as_chest_films():
    png, jpeg = warmup.synthetic_chest_images()
    from_png, from_jpeg = (tf.io.decode_image(image).numpy()[..., 0].astype(int) for image in (png, jpeg))
    assert png[:4] == b"\x89PNG" and jpeg[:3] == b"\xff\xd8\xff"
    assert abs(from_png - from_jpeg).mean() < 2
    side = from_png.shape[0]
    lung, mediastinum = from_png[side * 45 // 100, side * 30 // 100], from_png[side * 45 // 100, side // 2]
    assert lung < mediastinum - 100


def test_blessed_models_are_pushed_as_growing_versions(tmp_path, train_artifact):
    serving_dir = tmp_path / "serving"
    first, _ = base.execute(export.SPEC, {"model": train_artifact}, _params(serving_dir, 0.8), tmp_path / "runs")
    again, cached = base.execute(export.SPEC, {"model": train_artifact}, _params(serving_dir, 0.8), tmp_path / "runs")
    assert cached and push.existing_versions(serving_dir / "covid") == [1]  # a cached export pushes nothing new
    version_one = (serving_dir / "covid" / "1" / "saved_model.pb").read_bytes()
    second, _ = base.execute(export.SPEC, {"model": train_artifact}, _params(serving_dir, 0.9), tmp_path / "runs")
    assert export.read_export(first)["pushed_version"] == 1 and export.read_export(second)["pushed_version"] == 2
    assert push.existing_versions(serving_dir / "covid") == [1, 2]
    assert (serving_dir / "covid" / "1" / "saved_model.pb").read_bytes() == version_one  # never overwritten
    record = export.read_export(second)
    assert record["ensemble"] == "mean of member probabilities" and len(record["members"]) == 3
    assert record["verify_max_abs_diff"] <= 1e-5 and record["image_size"] == 64
    card = model_card.read(serving_dir / "covid" / "2")
    assert card["metrics"]["values"] == {"roc_auc_ci_low": {"value": 0.9}} and card["model"]["status"] == (
        "blessed: roc_auc_ci_low 0.9000 >= 0.7")


def test_the_pushed_model_is_the_mean_of_the_fold_models(tmp_path, train_artifact):
    import keras

    import models  # noqa: F401
    artifact, _ = base.execute(export.SPEC, {"model": train_artifact}, _params(tmp_path / "s", 0.8), tmp_path / "r")
    loaded = tf.saved_model.load(str(tmp_path / "s" / "covid" / "1"))
    folds = [keras.models.load_model(p) for p in export.find_fold_models(train_artifact.path)]
    image = helpers.sample_jpegs(1)[0]
    served = loaded.signatures["serving_default"](image_bytes=tf.constant([image]))["probability_of_death"]
    assert float(served[0]) == pytest.approx(helpers.keras_probabilities(folds, image), abs=1e-5)
    single, _ = base.execute(export.SPEC, {"model": train_artifact}, _params(tmp_path / "s", 0.8, members=2),
                             tmp_path / "r")
    record = export.read_export(single)
    assert record["ensemble"] == "single model" and record["members"][0]["path"].endswith("fold_2/model.keras")
    one = tf.saved_model.load(str(tmp_path / "s" / "covid" / "2")).signatures["serving_default"]
    assert float(one(image_bytes=tf.constant([image]))["probability_of_death"][0]) == pytest.approx(
        helpers.keras_probabilities(folds[2:], image), abs=1e-5)


def test_the_evaluation_artifact_blesses_when_given(tmp_path, train_artifact):
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "evaluation.json").write_text(json.dumps({"metrics": {"roc_auc": {"estimate": 0.95,
                                                                                      "ci_low": 0.8}}}))
    params = _params(tmp_path / "s", 0.1)  # the evaluation wins over the parameter
    artifact, _ = base.execute(export.SPEC, {"model": train_artifact,
                                             "evaluation": helpers.fake_artifact(evaluation, "eval")},
                               params, tmp_path / "r")
    record = export.read_export(artifact)
    assert record["blessed"] and record["metrics"] == {"roc_auc": 0.95, "roc_auc_ci_low": 0.8}
    assert record["reason"] == "roc_auc_ci_low 0.8000 >= 0.7" and record["pushed_version"] == 1
    assert "lower end of the 95% bootstrap interval" in record["blessed_on"]


def test_next_version_is_the_largest_plus_one(tmp_path):
    saved = tmp_path / "sm"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"x")
    root = tmp_path / "serving" / "m"
    for name in ("1", "5", "notes", ".hidden"):
        (root / name).mkdir(parents=True)
    (root / "7.txt").write_text("a file, not a version")
    version, path = push.push(saved, tmp_path / "serving", "m")
    assert version == 6 and path == root / "6" and (path / "saved_model.pb").read_bytes() == b"x"
    with pytest.raises(PipelineError, match="plain folder name"):
        push.push(saved, tmp_path / "serving", "../escape")


def test_a_failed_push_leaves_no_version(tmp_path, monkeypatch):
    saved = tmp_path / "sm"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"x" * 100)
    (saved / "variables" / "variables.data-00000-of-00001").write_bytes(b"y" * 100)

    def copy_half_then_fail(src, dst, **kwargs):
        os.makedirs(dst)
        shutil.copy(os.path.join(src, "saved_model.pb"), dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(push.shutil, "copytree", copy_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        push.push(saved, tmp_path / "serving", "m")
    assert list((tmp_path / "serving" / "m").iterdir()) == []


def test_a_killed_push_leaves_no_version_and_the_next_one_cleans_up(tmp_path):
    """SIGKILL in the middle of copying: no numbered folder appears; the next push removes the leftover."""
    saved = tmp_path / "sm"
    saved.mkdir()
    for i in range(20):
        (saved / f"part{i:02d}").write_bytes(os.urandom(1000))
    (saved / "saved_model.pb").write_bytes(b"x")
    marker = tmp_path / "copying"
    script = textwrap.dedent(f"""
        import pathlib, shutil, sys, time
        sys.modules["tensorflow"] = None  # pushing is file work: importing TensorFlow would fail here
        sys.path.insert(0, {str(configs.REPO_ROOT)!r})
        from serving import push
        real_copytree = shutil.copytree
        def copy_one_then_hang(src, dst, **kwargs):  # the copy stays under way until the test kills it
            shutil.copy2(src, dst, **kwargs)
            pathlib.Path({str(marker)!r}).touch()
            while True:
                time.sleep(1)
        shutil.copytree = lambda src, dst, **kwargs: real_copytree(src, dst, copy_function=copy_one_then_hang)
        push.push(pathlib.Path({str(saved)!r}), pathlib.Path({str(tmp_path / "serving")!r}), "m")
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 900
    while not marker.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the child never started copying"
    assert child.poll() is None, "the child finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    root = tmp_path / "serving" / "m"
    leftovers = list(root.iterdir())
    assert push.existing_versions(root) == [] and len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-push-")
    version, _ = push.push(saved, tmp_path / "serving", "m")
    assert version == 1 and sorted(p.name for p in root.iterdir()) == ["1"]


def test_no_model_files_is_a_pipeline_error(tmp_path):
    with pytest.raises(PipelineError, match="no model.keras"):
        export.find_fold_models(tmp_path)


def test_fold_models_are_found_in_numeric_order(tmp_path):
    for fold in (10, 2, 1):
        (tmp_path / f"fold_{fold}").mkdir()
        (tmp_path / f"fold_{fold}" / "model.keras").write_bytes(b"")
    assert [p.parent.name for p in export.find_fold_models(tmp_path)] == ["fold_1", "fold_2", "fold_10"]


def test_the_served_class_uses_the_export_threshold(tmp_path, train_artifact):
    artifact, _ = base.execute(export.SPEC, {"model": train_artifact},
                               _params(tmp_path / "s", 0.8, threshold=0.01), tmp_path / "r")
    loaded = tf.saved_model.load(str(artifact.path / "saved_model"))
    out = loaded.signatures[contract.DEFAULT_SIGNATURE](image_bytes=tf.constant(helpers.sample_jpegs(2)))
    assert np.all(out["class"].numpy() == (out["probability_of_death"].numpy() > 0.01))
    assert export.read_export(artifact)["threshold"] == 0.01


def test_models_trained_in_mixed_bfloat16_are_served_in_float32(tmp_path):
    import keras

    import models

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model, _ = models.build_classifier("resnet18", image_size=32)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    (served,) = export.load_models([path])

    def policies(m):
        for layer in m.layers:
            yield layer.dtype_policy.name
            if isinstance(layer, keras.Model):
                yield from policies(layer)

    assert set(policies(model)) == {"mixed_bfloat16", "float32"}
    assert set(policies(served)) == {"float32"}
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(served(images).numpy(), model(images).numpy(), atol=0.05)


def test_blessing_reads_the_lower_end_of_the_interval_and_with_repeats_the_mean_over_repeats():
    single = {"metrics": {"roc_auc": {"estimate": 0.9, "ci_low": 0.62}}}
    assert export.blessing_evidence(single)[0] == 0.62
    repeated = {**single, "repeated_cv": {"repeats": 3, "metrics": {"roc_auc": {"mean": 0.85, "ci_low": 0.71}}}}
    value, what = export.blessing_evidence(repeated)
    assert value == 0.71 and "averaged over 3 repeats" in what


def _generated_predictions(train_dir, k=3, per_fold=300, seed=0, slope=0.6):
    """Out-of-fold predictions whose deaths follow sigmoid(-0.8 + slope logit(p)): with 0.6, overconfident and too
    high; with a negative slope, ranked the wrong way round."""
    from components.train import outputs as train_outputs
    rng = np.random.default_rng(seed)
    for fold in range(k):
        p = 1 / (1 + np.exp(-rng.normal(0, 1.5, per_fold)))
        died = rng.random(per_fold) < 1 / (1 + np.exp(0.8 - slope * np.log(p / (1 - p))))
        with open(train_outputs.fold_dir(train_dir, fold) / train_outputs.PREDICTIONS_CSV, "w") as handle:
            handle.write(",".join(train_outputs.PREDICTION_COLUMNS) + "\n")
            for i in range(per_fold):
                handle.write(f"f{fold}-{i}.png,p{fold}-{i},{int(died[i])},observed,{float(p[i])!r}\n")


def _evaluation(folder, train_dir, roc_auc_ci_low=0.8):
    """An evaluate artifact as export reads it: the blessing metric and the development recalibration evaluate
    fits on the train artifact's out-of-fold predictions."""
    from components.evaluate import component as evaluate

    folder.mkdir(parents=True)
    record = {"metrics": {"roc_auc": {"estimate": roc_auc_ci_low + 0.05, "ci_low": roc_auc_ci_low,
                                      "ci_high": roc_auc_ci_low + 0.1}},
              "development": {"recalibration": evaluate.development_recalibration(train_dir)}}
    (folder / "evaluation.json").write_text(json.dumps(record))
    return helpers.fake_artifact(folder, "evaluation")


def test_export_serves_the_recalibrated_probability_fitted_on_out_of_fold_predictions(tmp_path):
    import keras

    import models  # noqa: F401
    from components.evaluate import validation
    helpers.write_folds(tmp_path / "train", k=3)
    helpers.write_train_records(tmp_path / "train", k=3)
    _generated_predictions(tmp_path / "train")
    train = helpers.fake_artifact(tmp_path / "train", "generated")
    evaluation = _evaluation(tmp_path / "evaluate", train.path)
    artifact, _ = base.execute(export.SPEC, {"model": train, "evaluation": evaluation}, _params(tmp_path / "s", 0.8),
                               tmp_path / "r")
    recalibration = export.read_export(artifact)["recalibration"]
    assert recalibration["applied"] and recalibration["slope"] == pytest.approx(0.6, abs=0.15)
    assert recalibration["intercept"] == pytest.approx(-0.8, abs=0.2)
    card = model_card.read(artifact.path / "saved_model")
    assert card["recalibration"] == recalibration
    folds = [keras.models.load_model(p) for p in export.find_fold_models(train.path)]
    images = helpers.sample_jpegs(2)
    served = tf.saved_model.load(str(artifact.path / "saved_model")).signatures["serving_default"](
        image_bytes=tf.constant(images))
    raw = np.array([helpers.keras_probabilities(folds, image) for image in images])
    expected = validation.apply_update(raw, recalibration["intercept"], recalibration["slope"])
    np.testing.assert_allclose(served["probability_of_death"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(served["class"].numpy(), (expected >= 0.5).astype(int))
    off, _ = base.execute(export.SPEC, {"model": train, "evaluation": evaluation},
                          _params(tmp_path / "s", 0.8, recalibrate=False), tmp_path / "r")
    assert export.read_export(off)["recalibration"]["reason"] == "turned off (--norecalibrate)"


def test_export_skips_recalibration_when_the_fitted_slope_is_not_positive(tmp_path):
    helpers.write_folds(tmp_path / "train", k=3)
    helpers.write_train_records(tmp_path / "train", k=3)
    _generated_predictions(tmp_path / "train", slope=-0.5)
    train = helpers.fake_artifact(tmp_path / "train", "reversed")
    evaluation = _evaluation(tmp_path / "evaluate", train.path)
    artifact, _ = base.execute(export.SPEC, {"model": train, "evaluation": evaluation}, _params(tmp_path / "s", 0.8),
                               tmp_path / "r")
    recalibration = export.read_export(artifact)["recalibration"]
    assert not recalibration["applied"] and recalibration["slope"] < 0
    assert recalibration["reason"].startswith(f"the fitted slope {recalibration['slope']:.3f} is not positive")


def test_export_skips_recalibration_with_the_reason_when_it_cannot_be_fitted(tmp_path, train_artifact):
    evaluation = _evaluation(tmp_path / "evaluate", train_artifact.path)
    artifact, _ = base.execute(export.SPEC, {"model": train_artifact, "evaluation": evaluation},
                               _params(tmp_path / "s", 0.8), tmp_path / "r")
    recalibration = export.read_export(artifact)["recalibration"]
    assert not recalibration["applied"] and recalibration["reason"] == "the out-of-fold probabilities are all equal"
    assert "- **why not**: the out-of-fold probabilities are all equal" in (
        artifact.path / "saved_model" / model_card.MARKDOWN_NAME).read_text()
    without, _ = base.execute(export.SPEC, {"model": train_artifact}, _params(tmp_path / "s", 0.8), tmp_path / "r")
    assert export.read_export(without)["recalibration"]["reason"] == "no evaluation to fit it on"
