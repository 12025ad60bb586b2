"""Repeated cross-validation in evaluate (components/evaluate/repeats.py), on generated out-of-fold predictions."""

import csv

import numpy as np
import pytest

from common.errors import PipelineError
from components.evaluate import clinical_baseline
from components.evaluate import decision as evaluate_decision
from components.evaluate import metrics as evaluate_metrics
from components.evaluate import repeats as evaluate_repeats
from components.train import outputs as train_outputs

PATIENTS = 30
FOLDS = 3


def _predictions(repeats, seed=0):
    """Two images per patient (one outcome each), every row validated once per repeat, with probabilities
    that follow the label plus noise drawn per patient (a patient's two X-rays look alike) and anew for each
    repeat (as another split's models would)."""
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"p{i:02d}" for i in range(PATIENTS)], 2)
    labels = np.repeat(rng.random(PATIENTS) < 0.4, 2).astype(int)
    source_ids = np.array([f"img{i:03d}" for i in range(len(patients))])
    noise = np.repeat(rng.normal(0, 0.25, (repeats, PATIENTS)), 2, axis=1)
    probabilities = np.clip(0.3 + 0.3 * labels + noise, 0.01, 0.99)
    return source_ids, patients, labels, probabilities


def _write_train_dir(train_dir, repeats, seed=0, imputed_rows=()):
    """A train artifact's repeat folders: each repeat's rows shuffled into its own folds."""
    source_ids, patients, labels, probabilities = _predictions(repeats, seed)
    rng = np.random.default_rng(seed + 1)
    for repeat in range(repeats):
        fold_of_patient = dict(zip(np.unique(patients), rng.integers(0, FOLDS, PATIENTS)))
        for fold in range(FOLDS):
            folder = train_outputs.fold_dir(train_outputs.repeat_dir(train_dir, repeat), fold)
            folder.mkdir(parents=True)
            with open(folder / train_outputs.PREDICTIONS_CSV, "w", newline="") as handle:
                table = csv.writer(handle)
                table.writerow(train_outputs.PREDICTION_COLUMNS)
                for i in rng.permutation(len(source_ids)):
                    if fold_of_patient[patients[i]] == fold:
                        source = "imputed" if i in imputed_rows else "observed"
                        table.writerow([source_ids[i], patients[i], labels[i], source, probabilities[repeat, i]])
    return source_ids, patients, labels, probabilities


def test_the_rows_of_every_repeat_are_aligned_by_source_id_observed_labels_only(tmp_path):
    source_ids, patients, labels, probabilities = _write_train_dir(tmp_path, 3, imputed_rows={0, 1})
    rows = evaluate_repeats.aligned_repeats(tmp_path, 3)
    np.testing.assert_array_equal(rows["source_id"], source_ids[2:])
    np.testing.assert_array_equal(rows["label"], labels[2:])
    np.testing.assert_allclose(rows["probability"], probabilities[:, 2:])


def test_a_repeat_that_validated_other_rows_is_a_named_error(tmp_path):
    _write_train_dir(tmp_path, 2)
    last = train_outputs.fold_dir(train_outputs.repeat_dir(tmp_path, 1), FOLDS - 1) / train_outputs.PREDICTIONS_CSV
    lines = last.read_text().splitlines()
    last.write_text("\n".join(lines[:-1]) + "\n")  # one validation row lost
    with pytest.raises(PipelineError, match="repeat 1 validated other observed-label rows than repeat 0"):
        evaluate_repeats.aligned_repeats(tmp_path, 2)


def test_the_estimate_is_the_mean_of_each_repeats_pooled_metric_with_its_spread():
    source_ids, patients, labels, probabilities = _predictions(4)
    rows = {"source_id": source_ids, "patient": patients, "label": labels, "probability": probabilities}
    result = evaluate_repeats.repeated_metrics(rows, "patient", 0.5, resamples=200, seed=0)
    aucs = [evaluate_metrics.metric_values(labels, p)["roc_auc"] for p in probabilities]
    recalls = [evaluate_metrics.metric_values(labels, p)["recall"] for p in probabilities]
    auc = result["metrics"]["roc_auc"]
    assert auc["mean"] == pytest.approx(np.mean(aucs))
    assert auc["sd"] == pytest.approx(np.std(aucs, ddof=1)) and auc["sd"] > 0
    assert (auc["min"], auc["max"]) == (pytest.approx(min(aucs)), pytest.approx(max(aucs)))
    assert result["metrics"]["recall"]["mean"] == pytest.approx(np.mean(recalls))
    assert auc["ci_low"] < auc["mean"] < auc["ci_high"]
    assert result["unit"] == "patient" and result["unit_count"] == PATIENTS and result["repeats"] == 4
    for name in evaluate_repeats.METRICS:
        assert result["metrics"][name]["valid_resamples"] > 0


def test_the_interval_resamples_patients_not_images():
    """Both images of a patient are drawn together: an image bootstrap of the same rows takes the twins for
    independent evidence, so its interval is narrower."""
    source_ids, patients, labels, probabilities = _predictions(2)
    rows = {"source_id": source_ids, "patient": patients, "label": labels, "probability": probabilities}
    by_patient = evaluate_repeats.repeated_metrics(rows, "patient", 0.5, resamples=300, seed=0)
    by_image = evaluate_repeats.repeated_metrics(rows, "image", 0.5, resamples=300, seed=0)
    assert by_image["unit"] == "image" and by_image["unit_count"] == 2 * PATIENTS
    assert by_patient["metrics"]["roc_auc"]["mean"] == by_image["metrics"]["roc_auc"]["mean"]
    width = {name: r["metrics"]["brier"]["ci_high"] - r["metrics"]["brier"]["ci_low"]
             for name, r in (("patient", by_patient), ("image", by_image))}
    assert width["image"] < width["patient"]


def test_run_writes_the_table_and_records_the_split_seeds(tmp_path):
    train_dir = tmp_path / "train"
    _write_train_dir(train_dir, 2)
    summary = {"split": "patient", "params": {"repeats": 2}, "split_seeds": [0, 12345]}
    params = {"threshold": 0.5, "bootstrap_resamples": 50, "seed": 0}
    result = evaluate_repeats.run(train_dir, summary, params, tmp_path)
    assert result["split_seeds"] == [0, 12345]
    with open(tmp_path / evaluate_repeats.TABLE_NAME, newline="") as handle:
        table = {row["metric"]: row for row in csv.DictReader(handle) if row["set"] == "image"}
    assert list(table) == list(evaluate_repeats.METRICS)
    auc = table["roc_auc"]
    assert float(auc["mean_over_repeats"]) == pytest.approx(result["metrics"]["roc_auc"]["mean"])
    assert np.mean([float(auc["repeat_0"]), float(auc["repeat_1"])]) == pytest.approx(float(auc["mean_over_repeats"]))


def test_each_repeat_carries_the_calibration_slope_of_its_pooled_predictions():
    source_ids, patients, labels, probabilities = _predictions(3)
    rows = {"source_id": source_ids, "patient": patients, "label": labels, "probability": probabilities}
    result = evaluate_repeats.repeated_metrics(rows, "patient", 0.5, resamples=50, seed=0)
    slopes = [evaluate_decision.calibration_slope_intercept(labels, p)["slope"] for p in probabilities]
    assert [r["calibration_slope"] for r in result["per_repeat"]] == pytest.approx(slopes)
    assert result["metrics"]["calibration_slope"]["mean"] == pytest.approx(np.mean(slopes))
    slope = result["metrics"]["calibration_slope"]
    assert slope["ci_low"] < slope["mean"] < slope["ci_high"]


def _admission(source_ids, labels, seed=0):
    """Age that tells the outcome apart (older patients died more), sex that does not; some ages unknown."""
    rng = np.random.default_rng(seed)
    age = np.where(labels == 1, 72.0, 55.0) + rng.normal(0, 8, len(labels))
    age[::7] = np.nan
    sex = rng.integers(0, 2, len(labels)).astype(float)
    return {sid: (a, x) for sid, a, x in zip(source_ids, age, sex)}


def test_the_admission_baselines_are_refitted_on_each_repeats_own_folds(tmp_path):
    _write_train_dir(tmp_path, 2)
    rows = evaluate_repeats.aligned_repeats(tmp_path, 2)
    assert rows["fold"].shape == rows["probability"].shape and not np.array_equal(rows["fold"][0], rows["fold"][1])
    admission = _admission(rows["source_id"], rows["label"])
    features = np.array([admission[sid] for sid in rows["source_id"]])
    baselines = evaluate_repeats.admission_repeats(rows, features)
    for repeat in range(2):
        np.testing.assert_allclose(baselines["age_sex"]["probability"][repeat], clinical_baseline.out_of_fold(
            features, rows["label"], rows["fold"][repeat]))
        np.testing.assert_allclose(baselines["image_age_sex"]["probability"][repeat], clinical_baseline.combined(
            rows["probability"][repeat], features, rows["label"], rows["fold"][repeat]))
    assert not np.allclose(baselines["age_sex"]["probability"][0], baselines["age_sex"]["probability"][1])


def test_run_summarises_the_baselines_beside_the_image_on_the_same_resamples(tmp_path):
    train_dir = tmp_path / "train"
    source_ids, _, labels, _ = _write_train_dir(train_dir, 2)
    summary = {"split": "patient", "params": {"repeats": 2}, "split_seeds": [0, 12345]}
    params = {"threshold": 0.5, "bootstrap_resamples": 100, "seed": 0}
    result = evaluate_repeats.run(train_dir, summary, params, tmp_path, _admission(source_ids, labels))
    age_sex = result["baselines"]["age_sex"]["metrics"]["roc_auc"]
    assert 0.7 < age_sex["mean"] and age_sex["ci_low"] < age_sex["mean"] < age_sex["ci_high"]
    assert set(result["baselines"]) == {"age_sex", "image_age_sex"}
    with open(tmp_path / evaluate_repeats.TABLE_NAME, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["set"] for row in table] == [s for s in ("image", evaluate_repeats.RECALIBRATED, "age_sex", "image_age_sex")
                                             for _ in evaluate_repeats.METRICS]
    row = next(r for r in table if (r["set"], r["metric"]) == ("age_sex", "roc_auc"))
    assert float(row["mean_over_repeats"]) == pytest.approx(age_sex["mean"])
    gain = result["image_minus_age_sex"]
    per_repeat = [image["roc_auc"] - alone["roc_auc"]
                  for image, alone in zip(result["per_repeat"], result["baselines"]["age_sex"]["per_repeat"])]
    assert gain["difference"] == pytest.approx(np.mean(per_repeat))
    assert gain["low"] < gain["difference"] < gain["high"]


def test_a_validated_image_without_admission_facts_is_named(tmp_path):
    train_dir = tmp_path / "train"
    source_ids, _, labels, _ = _write_train_dir(train_dir, 2)
    admission = _admission(source_ids, labels)
    del admission[source_ids[3]]
    summary = {"split": "patient", "params": {"repeats": 2}, "split_seeds": [0, 1]}
    with pytest.raises(PipelineError, match=f"without admission facts, e.g. '{source_ids[3]}'"):
        evaluate_repeats.run(train_dir, summary, {"threshold": 0.5, "bootstrap_resamples": 10, "seed": 0},
                             tmp_path, admission)


def test_run_summarises_each_repeats_cross_fitted_recalibration(tmp_path):
    from components.evaluate import validation

    train_dir = tmp_path / "train"
    _write_train_dir(train_dir, 2)
    summary = {"split": "patient", "params": {"repeats": 2}, "split_seeds": [0, 1]}
    result = evaluate_repeats.run(train_dir, summary, {"threshold": 0.5, "bootstrap_resamples": 40, "seed": 0},
                                  tmp_path)
    rows = evaluate_repeats.aligned_repeats(train_dir, 2)
    for repeat, values in enumerate(result["recalibrated"]["per_repeat"]):
        served = validation.cross_fitted(rows["label"], rows["probability"][repeat], rows["fold"][repeat])
        assert not np.allclose(served, rows["probability"][repeat])
        assert values["brier"] == pytest.approx(np.mean((served - rows["label"]) ** 2))
    with open(tmp_path / evaluate_repeats.TABLE_NAME, newline="") as handle:
        table = [row for row in csv.DictReader(handle) if row["set"] == evaluate_repeats.RECALIBRATED]
    assert [row["metric"] for row in table] == list(evaluate_repeats.METRICS)
