"""Evaluate beyond the study: patient-level ranking, first-week images, calibration and test-time augmentation."""

import csv
import dataclasses
import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.evaluate import component as evaluate
from components.evaluate import decision as evaluate_decision
from components.evaluate import metrics as evaluate_metrics
from components.evaluate import plots as evaluate_plots
from components.train import fold as train_fold, input_pipeline, metrics as train_metrics, splits
from components.train import outputs as train_outputs
from components import configs
from pipeline import local_runner
from pipeline.pipeline import create_pipeline
from tests.serving import helpers

PARAMS = {"threshold": 0.5, "bootstrap_resamples": 50, "seed": 0, "gradcam_images": 0, "tta_views": 0}
IMAGE_SIZE = 32
FOLDS = 3


def _rows(rows):
    """(fold, patient, label, label_source, probability) tuples -> prediction columns, one image each."""
    columns = dict(zip(("fold", "patient", "label", "label_source", "probability"), map(np.asarray, zip(*rows))))
    columns["source_id"] = np.array([f"{patient}-{i}.png" for i, patient in enumerate(columns["patient"])])
    return columns


# Patient level, fold 0: a (died) 0.7, b (survived) 0.4, c (survived) 0.8 -> AUC 1/2.
#                fold 1: d (died) 0.4, f (died) 0.6, e (survived) 0.1 -> AUC 1. Fold mean 0.75.
CONSTRUCTED = _rows([
    (0, "a", 1, "observed", 0.9), (0, "a", 1, "observed", 0.5), (0, "b", 0, "observed", 0.2),
    (0, "b", 0, "observed", 0.6), (0, "c", 0, "observed", 0.8), (0, "g", 1, "imputed", 0.1),
    (1, "d", 1, "observed", 0.3), (1, "d", 1, "observed", 0.5), (1, "e", 0, "observed", 0.1),
    (1, "f", 1, "observed", 0.6),
])


def test_patients_are_ranked_by_the_mean_of_their_images():
    record = evaluate.evaluation_record(CONSTRUCTED, "original_weights", "patient", None, PARAMS)
    patients = record["sets"][evaluate.PATIENT_LEVEL]
    assert patients["n"] == 6 and patients["positives"] == 3  # the imputed patient g is left out
    assert patients["fold_mean"]["roc_auc"]["mean"] == pytest.approx(0.75)
    # pooled: died a .7, d .4, f .6 against survived b .4, c .8, e .1 -> 5.5 of 9 pairs
    assert patients["pooled"]["roc_auc"] == pytest.approx(5.5 / 9)
    assert patients["per_fold"][0]["roc_auc"] == pytest.approx(0.5)
    assert patients["bootstrap"]["unit"] == "patient" and patients["bootstrap"]["unit_count"] == 6
    rows = evaluate.patient_level(evaluate.evaluation_sets(CONSTRUCTED, "patient")[evaluate.OBSERVED])
    means = dict(zip(rows["patient"], rows["probability"]))
    assert means == pytest.approx({"a": 0.7, "b": 0.4, "c": 0.8, "d": 0.4, "e": 0.1, "f": 0.6})
    assert dict(zip(rows["patient"], rows["images"])) == {"a": 2, "b": 2, "c": 1, "d": 2, "e": 1, "f": 1}
    # the headline stays the image-level one
    images = evaluate.evaluation_sets(CONSTRUCTED, "patient")[evaluate.OBSERVED]
    image_auc = evaluate_metrics.summarize(images["fold"], images["label"], images["probability"])
    assert record["metrics"]["roc_auc"]["estimate"] == image_auc["pooled"]["roc_auc"] != pytest.approx(5.5 / 9)
    assert record["metrics"]["roc_auc"]["fold_mean"] == image_auc["fold_mean"]["roc_auc"]["mean"]


def test_patient_level_needs_a_patient_split():
    record = evaluate.evaluation_record(CONSTRUCTED, "original_weights", "image", None, PARAMS)
    assert evaluate.PATIENT_LEVEL not in record["sets"]


def test_first_week_images_are_those_with_an_offset_of_at_most_seven_days():
    rows = _rows([(0, "a", 1, "observed", 0.9), (0, "b", 0, "observed", 0.2), (0, "c", 0, "observed", 0.6),
                  (1, "d", 1, "observed", 0.3), (1, "e", 0, "observed", 0.1), (1, "f", 1, "imputed", 0.6)])
    rows["offset_days"] = np.array([-3.0, 7.0, 8.0, np.nan, 0.0, 2.0])
    record = evaluate.evaluation_record(rows, "original_weights", "patient", None, PARAMS)
    early = evaluate.evaluation_sets(rows, "patient")[evaluate.EARLY_IMAGES]
    assert list(early["patient"]) == ["a", "b", "e"]  # 8 days is late, no offset is unknown, f is imputed
    assert record["sets"][evaluate.EARLY_IMAGES]["n"] == 3 and record["sets"][evaluate.EARLY_IMAGES]["positives"] == 1
    assert record["sets"][evaluate.EARLY_IMAGES]["per_fold"][0]["roc_auc"] == pytest.approx(1.0)
    assert evaluate.EARLY_IMAGES not in evaluate.evaluation_sets(CONSTRUCTED, "patient")  # no offsets given


def test_disagreeing_observed_labels_of_a_patient_are_refused_by_name():
    rows = _rows([(0, "p7", 1, "observed", 0.9), (0, "p7", 0, "observed", 0.2), (0, "p8", 0, "observed", 0.3)])
    with pytest.raises(ValueError, match=r"patient 'p7' \(fold 0\) has disagreeing observed labels \[0, 1\]"):
        evaluate.evaluation_record(rows, "original_weights", "patient", None, PARAMS)


def test_expected_calibration_error_by_hand():
    labels = np.array([1, 0, 0, 1, 1, 0])
    probabilities = np.array([0.05, 0.15, 0.12, 0.85, 0.95, 1.0])
    calibration = evaluate_metrics.calibration(labels, probabilities)
    # bins: [0, .1) 1 image gap .95; [.1, .2) 2 images gap .135; [.8, .9) gap .15; [.9, 1] 2 images, mean .975, 1/2
    assert calibration["ece"] == pytest.approx((0.95 + 2 * 0.135 + 0.15 + 2 * 0.475) / 6)
    assert [b["count"] for b in calibration["bins"]] == [1, 2, 0, 0, 0, 0, 0, 0, 1, 2]
    assert calibration["bins"][9]["observed_fraction"] == 0.5 and calibration["base_rate"] == 0.5
    assert np.isnan(calibration["bins"][4]["mean_predicted"])


def test_perfectly_calibrated_bins_have_zero_error():
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    probabilities = np.array([0.25] * 4 + [0.75] * 4)
    assert evaluate_metrics.calibration(labels, probabilities)["ece"] == pytest.approx(0.0)


def test_the_calibration_entry_reuses_the_pooled_brier_and_the_figure_is_a_png(tmp_path):
    record = evaluate.evaluation_record(CONSTRUCTED, "original_weights", "patient", None, PARAMS)
    observed = record["sets"][evaluate.OBSERVED]
    assert observed["calibration"]["brier"] == observed["pooled"]["brier"]
    assert observed["calibration"]["base_rate"] == pytest.approx(5 / 9)
    path = evaluate_plots.reliability_diagram(observed["calibration"], tmp_path / "calibration.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(path).size[0] > 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The sample's TFRecords and a train artifact over them: 3 patient-split folds of tiny Keras models,
    each with the out-of-fold predictions the train stage would have written."""
    out = tmp_path_factory.mktemp("evaluate")
    upstream = local_runner.run_pipeline(create_pipeline(configs.PipelineConfig(output_dir=out / "runs")),
                                         "tfrecords", log=lambda _: None)
    tfrecords = upstream["tfrecords"]
    train_dir = out / "train"
    params = train_fold.TrainParams(image_size=IMAGE_SIZE, split="patient", folds=FOLDS)
    examples = input_pipeline.load_examples(tfrecords.path, params.labels, IMAGE_SIZE)
    fold_models = helpers.write_folds(train_dir, k=FOLDS, image_size=IMAGE_SIZE)
    for fold, (_, val_idx) in enumerate(splits.make_folds(examples.labels, examples.patients, "patient", FOLDS, 0)):
        val = examples.subset(val_idx)
        logits = keras.models.load_model(fold_models[fold], compile=False).predict(val.images, verbose=0)[:, 0]
        with open(train_dir / f"fold_{fold}" / "predictions.csv", "w", newline="") as handle:
            table = csv.writer(handle)
            table.writerow(["source_id", "patient", "label", "label_source", "probability"])
            table.writerows(zip(val.source_ids, val.patients, val.labels, val.label_sources,
                                train_metrics.sigmoid(logits)))
        (train_dir / f"fold_{fold}" / "history.json").write_text(json.dumps(
            [{"phase": "unfrozen", "global_epoch": 0, "train_loss": 0.7, "val_loss": 0.69}]))
    summary = {"variant": params.variant, "split": "patient", "weights": None, "params": dataclasses.asdict(params)}
    (train_dir / "train_summary.json").write_text(json.dumps(summary))
    return ({"train": helpers.fake_artifact(train_dir, "train"), "tfrecords": tfrecords, "examples": upstream["ingest"]},
            summary)


def test_one_tta_view_is_the_stored_prediction(trained):
    inputs, summary = trained
    predictions = train_outputs.read_predictions(inputs["train"].path)
    trained_with = train_outputs.read_params(inputs["train"].path)
    tta = evaluate.tta_predictions(inputs["train"].path, inputs["tfrecords"].path, predictions, trained_with,
                                   views=1, seed=0)
    np.testing.assert_allclose(tta["probability"], predictions["probability"], atol=1e-5)


def test_three_tta_views_give_a_named_set_of_finite_probabilities(trained, tmp_path):
    inputs, summary = trained
    evaluate.run(inputs, {**PARAMS, "tta_views": 3}, tmp_path)
    predictions = train_outputs.read_predictions(inputs["train"].path)
    with open(tmp_path / evaluate.TTA_PREDICTIONS_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["source_id"] for r in rows] == list(predictions["source_id"])
    tta = np.array([float(r["probability_tta"]) for r in rows])
    assert np.isfinite(tta).all() and ((0 <= tta) & (tta <= 1)).all()
    assert not np.allclose(tta, predictions["probability"], atol=1e-4)  # the augmented views count
    again = evaluate.tta_predictions(inputs["train"].path, inputs["tfrecords"].path, predictions,
                                     train_outputs.read_params(inputs["train"].path), views=3, seed=0)
    np.testing.assert_array_equal(again["probability"], tta)  # seeded: the same views every time

    record = json.loads((tmp_path / evaluate.EVALUATION_NAME).read_text())
    # What export serves and its card carries, fitted here on the same out-of-fold predictions.
    observed = predictions["label_source"] == "observed"
    assert record["development"]["recalibration"]["rows"] == int(observed.sum())
    assert record["development"]["case_mix"]["images"] == int(observed.sum())
    facts = evaluate.with_row_facts(predictions, evaluate.examples_by_source_id(inputs["examples"]))
    metadata = pd.read_csv(configs.SAMPLE_DATA_DIR / "metadata.csv").set_index("filename")
    offsets = facts["offset_days"]
    np.testing.assert_array_equal(offsets, [metadata["offset"][sid] for sid in predictions["source_id"]])
    np.testing.assert_array_equal(facts["sex"], [{"M": 1.0, "F": 0.0}.get(metadata["sex"][sid], np.nan)
                                                 for sid in predictions["source_id"]])
    observed = predictions["label_source"] == "observed"
    assert record["sets"][evaluate.EARLY_IMAGES]["n"] == np.sum(observed & (offsets <= 7)) > 0
    assert record["sets"][evaluate.OBSERVED_TTA]["tta_views"] == 3
    assert record["sets"][evaluate.OBSERVED_TTA]["n"] == len(rows)
    assert {evaluate.OBSERVED, evaluate.PATIENT_LEVEL, evaluate.OBSERVED_TTA} <= set(record["sets"])
    assert "ece" in record["sets"][evaluate.OBSERVED]["calibration"]
    without_tta = evaluate.evaluation_record(facts, summary["variant"], "patient", None, PARAMS)
    same = json.dumps(record["metrics"], sort_keys=True) == json.dumps(without_tta["metrics"], sort_keys=True)
    assert same  # the headline does not move
    for figure in (evaluate.CALIBRATION_FIGURE, evaluate.DECISION_CURVE_FIGURE):
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / evaluate.SUMMARY_NAME, newline="") as handle:
        summary_sets = {(r["set"], r["metric"]) for r in csv.DictReader(handle)}
    assert {(evaluate.OBSERVED_TTA, "roc_auc"), (evaluate.PATIENT_LEVEL, "roc_auc"), (evaluate.AGE_SEX, "roc_auc"),
            (evaluate.OBSERVED, "calibration_slope")} <= summary_sets
    with open(tmp_path / evaluate.PER_FOLD_NAME, newline="") as handle:
        assert {r["set"] for r in csv.DictReader(handle)} == {
            evaluate.OBSERVED, evaluate.PATIENT_LEVEL, evaluate.EARLY_IMAGES, evaluate.OBSERVED_TTA,
            evaluate.AGE_SEX, evaluate.IMAGE_AGE_SEX, evaluate.RECALIBRATED}
    assert (evaluate.RECALIBRATED, "calibration_slope") in summary_sets
    with open(tmp_path / evaluate.DECISION_CURVE_NAME, newline="") as handle:
        curve = list(csv.DictReader(handle))
    assert [float(r["threshold"]) for r in curve] == list(evaluate_decision.DECISION_THRESHOLDS)
    assert float(curve[0]["net_benefit_observed_labels"]) == pytest.approx(
        record["decision_curves"][evaluate.OBSERVED]["rows"][0]["model"])


def test_negative_tta_views_is_a_named_error(trained):
    inputs, summary = trained
    predictions = train_outputs.read_predictions(inputs["train"].path)
    with pytest.raises(ValueError, match="tta_views must be 0 .off. or at least 1, not -2"):
        evaluate.tta_predictions(inputs["train"].path, inputs["tfrecords"].path, predictions,
                                 train_outputs.read_params(inputs["train"].path), views=-2, seed=0)


def _cohort(patients=120, seed=0):
    """Two images per patient; death follows age; the image model's probability is noise around 0.4."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(30, 95, patients)
    died = (rng.random(patients) < 1 / (1 + np.exp(-(age - 72) / 5))).astype(int)
    repeat = lambda a: np.repeat(a, 2)  # noqa: E731
    rows = {"fold": repeat(np.arange(patients) % 5), "patient": repeat(np.arange(patients).astype(str)),
            "label": repeat(died), "label_source": np.array(["observed"] * 2 * patients),
            "probability": np.clip(rng.normal(0.4, 0.15, 2 * patients), 0.01, 0.99),
            "age": repeat(age), "sex": repeat(rng.integers(0, 2, patients).astype(float)),
            "offset_days": np.tile([2.0, 10.0], patients)}
    rows["source_id"] = np.array([f"{p}-{i}.png" for i, p in enumerate(rows["patient"])])
    return rows


def test_age_and_sex_are_judged_beside_the_image_on_the_same_rows_and_folds():
    rows = _cohort()
    record = evaluate.evaluation_record(rows, "original", "patient", None, {**PARAMS, "bootstrap_resamples": 200})
    sets, comparison = record["sets"], record["admission_comparison"]
    assert sets[evaluate.AGE_SEX]["n"] == sets[evaluate.OBSERVED]["n"] == 240
    assert sets[evaluate.AGE_SEX]["pooled"]["roc_auc"] > 0.8 > 0.65 > sets[evaluate.OBSERVED]["pooled"]["roc_auc"]
    gain = comparison["image_minus_age_sex"]  # an X-ray of noise adds nothing: it loses to age, clearly
    assert gain["difference"] < 0 and gain["high"] < 0 and gain["unit_count"] == 120
    assert comparison["rows_with_age"] == comparison["rows_with_sex"] == 240
    # the combination learns to lean on age: far better than the image, close to age alone
    combined = sets[evaluate.IMAGE_AGE_SEX]["pooled"]["roc_auc"]
    assert combined > sets[evaluate.OBSERVED]["pooled"]["roc_auc"] + 0.15
    assert set(record["decision_curves"]) == {evaluate.OBSERVED, evaluate.AGE_SEX, evaluate.IMAGE_AGE_SEX}


def test_every_pooled_estimate_lies_inside_its_own_interval():
    record = evaluate.evaluation_record(_cohort(seed=3), "original", "patient", None,
                                        {**PARAMS, "bootstrap_resamples": 300})
    for name, summary in record["sets"].items():
        for metric in evaluate_metrics.METRICS:
            interval = summary["bootstrap"]["intervals"][metric]
            assert interval["low"] <= summary["pooled"][metric] <= interval["high"], (name, metric)
    calibration = record["sets"][evaluate.OBSERVED]["calibration"]
    for metric in ("ece", "slope", "intercept"):
        interval = calibration["intervals"][metric]
        assert interval["low"] <= calibration[metric] <= interval["high"], metric
    headline = record["metrics"]["precision"]
    assert headline["estimate"] == record["sets"][evaluate.OBSERVED]["pooled"]["precision"]
    assert headline["fold_mean"] == record["sets"][evaluate.OBSERVED]["fold_mean"]["precision"]["mean"]


def test_row_facts_name_an_image_ingest_does_not_list():
    rows = _rows([(0, "a", 1, "observed", 0.9), (0, "b", 0, "observed", 0.2)])
    examples = {rows["source_id"][0]: {"offset": "3", "age": ">80", "sex": "F"}}
    with pytest.raises(evaluate.PipelineError, match=r"1 predicted image\(s\) not in ingest's table, e\.g\. 'b-1\.png"):
        evaluate.with_row_facts(rows, examples)
    facts = evaluate.with_row_facts({k: v[:1] for k, v in rows.items()}, examples)
    assert (facts["offset_days"][0], facts["age"][0], facts["sex"][0]) == (3.0, 81.0, 0.0)


def test_stored_tta_predictions_must_be_of_the_same_run(tmp_path):
    predictions = _cohort(patients=5)
    tta = {**predictions, "probability": predictions["probability"] / 2}
    path = tmp_path / evaluate.TTA_PREDICTIONS_NAME
    evaluate._write_tta_predictions(path, predictions, tta)
    np.testing.assert_array_equal(evaluate.read_tta_predictions(path, predictions)["probability"], tta["probability"])
    other = {**predictions, "probability": predictions["probability"] + 1e-6}
    with pytest.raises(evaluate.PipelineError, match="another stored probability"):
        evaluate.read_tta_predictions(path, other)


def test_images_with_burned_in_text_are_never_pictured():
    predictions = {"source_id": np.array(["a.dcm", "b.dcm", "c.png"]), "label": np.array([1, 0, 1])}
    examples = {"a.dcm": {"burned_in_annotation": "1"}, "b.dcm": {"burned_in_annotation": "0"}, "c.png": {}}
    shown = evaluate.without_burned_in_text(predictions, examples)
    assert shown["source_id"].tolist() == ["b.dcm", "c.png"] and shown["label"].tolist() == [0, 1]


def test_under_the_site_split_the_record_names_each_folds_site_and_rows_only_sites_with_both_outcomes(tmp_path):
    rows = _cohort(seed=1)
    rows["label"][rows["fold"] == 2] = 0  # the site of fold 2 saw survivors only
    sites = ["Italy", "Spain", "China", "other sites", "unknown"]
    record = evaluate.evaluation_record(rows, "original", "site", None, PARAMS, site_of_fold=sites)
    assert record["site_of_fold"] == sites
    assert [row["site"] for row in record["per_site"]] == ["Italy", "Spain", "other sites", "unknown"]
    italy = record["per_site"][0]
    assert italy["roc_auc"] == record["sets"][evaluate.OBSERVED]["per_fold"][0]["roc_auc"]
    assert italy["images"] == (rows["fold"] == 0).sum() and italy["deaths"] == rows["label"][rows["fold"] == 0].sum()
    assert record["sets"][evaluate.OBSERVED]["bootstrap"]["unit"] == "patient"  # patients resampled, as by patient
    assert evaluate.PATIENT_LEVEL in record["sets"]
    evaluate._write_tables(tmp_path, record)
    with open(tmp_path / evaluate.PER_FOLD_NAME, newline="") as handle:
        table = [row for row in csv.DictReader(handle) if row["set"] == evaluate.OBSERVED]
    assert [row["site"] for row in table] == sites
