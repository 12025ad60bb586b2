"""The model card: built from a real evaluation record of generated predictions, rendered in Markdown."""

import numpy as np
import pytest

from components import model_card
from components.evaluate import component as evaluate
from components.evaluate import outputs as evaluate_outputs

PARTIAL = ("weights: ImageNet, partial: conv1-layer3 + stage-4 shortcut; stage-4 3x3 convs random\n"
           "  source: resnet18_imagenet_partial.npz (sha256 abc)\n  mode: partial; loaded 82 tensors")
SCRATCH = "no pretrained weights (--weights not given): training from scratch"


def _predictions(seed=0, patients=30, folds=3):
    rng = np.random.default_rng(seed)
    rows = {"fold": [], "source_id": [], "patient": [], "label": [], "label_source": [], "probability": []}
    for patient in range(patients):
        died = int(patient % 5 == 0)  # deaths in every fold
        for image in range(2):
            rows["fold"].append(patient % folds)
            rows["source_id"].append(f"p{patient}-{image}.jpg")
            rows["patient"].append(str(patient))
            rows["label"].append(died)
            rows["label_source"].append("imputed" if patient % 10 == 9 else "observed")
            rows["probability"].append(float(np.clip(0.3 + 0.3 * died + rng.normal(0, 0.2), 0, 1)))
    return {k: np.asarray(v) for k, v in rows.items()}


@pytest.fixture(scope="module")
def card():
    predictions = _predictions()
    evaluation = evaluate.evaluation_record(predictions, "original_weights", "image", PARTIAL,
                                            {"threshold": 0.4, "bootstrap_resamples": 50, "seed": 0})
    export_record = {"threshold": 0.4, "ensemble": "mean of member probabilities", "members": [{}, {}, {}],
                     "image_size": 224, "bless_thresholds": {"roc_auc": 0.7}, "metrics": {"roc_auc": 0.6}}
    built = model_card.build(
        model_name="covid_demo", status="DEMO — not blessed for use: roc_auc 0.6000 < 0.7", blessed=False,
        export_record=export_record, predictions=predictions, evaluation=evaluation,
        train_summary={"variant": "original_weights", "labels": "observed", "split": "image", "weights": PARTIAL},
        data={"source": "upstream", "collection": "ieee8023/covid-chestxray-dataset", "content_sha256": "f" * 64})
    return built, evaluation


def test_weights_provenance_names_the_initialisation():
    assert model_card.weights_provenance(PARTIAL) == {
        "initialisation": "ImageNet, partial (stage-4 3x3 convs random)", "detail": PARTIAL}
    assert model_card.weights_provenance(SCRATCH)["initialisation"] == "random initialisation"
    assert model_card.weights_provenance(None)["initialisation"] == "random initialisation"
    assert model_card.weights_provenance("weights: ImageNet, full\n  source: x.pth")["initialisation"] == "ImageNet"


def test_counts_are_those_of_the_rows_the_model_was_made_from(card):
    built, _ = card
    data = built["data"]
    assert (data["images"], data["patients"], data["images_of_deaths"], data["patients_who_died"]) == (60, 30, 12, 6)
    assert (data["observed_labels"], data["imputed_labels"]) == (54, 6)
    assert data["content_sha256"] == "f" * 64 and data["split"] == "image"


def test_metrics_carry_the_evaluations_intervals_and_calibration(card):
    built, evaluation = card
    auc = built["metrics"]["values"]["roc_auc"]
    roc_auc = evaluation["metrics"]["roc_auc"]
    assert auc == {"value": roc_auc["estimate"], "ci_low": roc_auc["ci_low"], "ci_high": roc_auc["ci_high"]}
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert built["metrics"]["interval"] == "95% bootstrap interval, images resampled"
    calibration = evaluation["sets"][evaluate_outputs.OBSERVED]["calibration"]
    for name in ("ece", "brier", "slope", "intercept"):
        assert built["calibration"][name] == calibration[name]
    assert "bins" not in built["calibration"]


def test_the_decision_rule_and_this_runs_failure_modes_are_stated(card):
    built, _ = card
    assert built["decision"]["threshold"] == 0.4
    assert "class 1 ('died') when probability_of_death >= 0.4" in built["decision"]["rule"]
    modes = " ".join(built["known_failure_modes"])
    assert "Patient leakage" in modes and "ImageNet, partial (stage-4 3x3 convs random)" in modes
    assert "6 training labels were imputed" in modes and "Not validated prospectively" in modes
    assert "No pretrained weights" not in modes
    assert "Research use only" in built["notice"]


def test_the_markdown_card_shows_every_section(card):
    built, evaluation = card
    text = model_card.to_markdown(built)
    assert text.startswith("# Model card: covid_demo\n\n**DEMO — not blessed for use: roc_auc 0.6000 < 0.7**")
    for title in ("Intended use", "Data", "Weights", "Metrics (95% bootstrap interval, images resampled)",
                  "Calibration", "Decision threshold", "Known failure modes"):
        assert f"\n## {title}\n" in text
    auc = evaluation["metrics"]["roc_auc"]
    assert f"- **roc_auc**: {auc['estimate']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]" in text
    assert "- **patients who died**: 6" in text


def test_the_card_is_written_and_read_back(card, tmp_path):
    built, _ = card
    model_card.write(tmp_path, built)
    assert model_card.read(tmp_path) == built
    assert (tmp_path / model_card.MARKDOWN_NAME).read_text() == model_card.to_markdown(built)


def test_a_card_of_the_hospitals_own_data_names_it_without_ids_or_paths(card):
    _, evaluation = card
    predictions = _predictions()
    predictions["patient"] = np.char.add("pt-", predictions["patient"])
    built = model_card.build(
        model_name="covid", status="blessed", blessed=True, evaluation=evaluation, predictions=predictions,
        export_record={"threshold": 0.5, "ensemble": "single model", "members": [{}], "image_size": 224,
                       "bless_thresholds": {"roc_auc": 0.7}, "metrics": {}},
        train_summary={"variant": "original_weights", "labels": "observed", "split": "patient", "weights": None},
        data={"source": "manifest", "folder": "export-2021", "pseudonym_key_id": "0123456789abcdef",
              "sites": ["north", "south"], "content_sha256": "f" * 64})
    text = model_card.to_markdown(built)
    for shown in ("**data folder (its name)**: export-2021", "**sites**: north, south",
                  "**pseudonym key id**: 0123456789abcdef", "**images trained and cross-validated on**: 60",
                  "**patients**: 30", "**patients who died**: 6", "the hospital's own data"):
        assert shown in text
    assert built["intended_use"] == model_card.HOSPITAL_INTENDED_USE
    assert "ieee8023" not in text and "public collection" not in text and "pt-" not in text


def test_imputed_rows_that_only_train_are_counted_from_the_train_summary():
    predictions = _predictions()
    observed = {k: v[predictions["label_source"] == "observed"] for k, v in predictions.items()}  # in-fold imputation
    counts = model_card.data_counts(observed, {"imputed_rows": 6, "imputed_only_patients": 3})
    assert (counts["images"], counts["patients"], counts["observed_labels"], counts["imputed_labels"]) == (60, 30, 54, 6)
    modes = model_card.failure_modes("patient", "ImageNet", counts)
    assert any(mode.startswith("6 training labels were imputed") for mode in modes)
    with_aux = model_card.data_counts(observed, {"imputed_rows": 0, "aux_only_rows": 8, "trained_only_patients": 4})
    assert (with_aux["images"], with_aux["patients"], with_aux["imputed_labels"],
            with_aux["auxiliary_target_only_images"]) == (62, 31, 0, 8)
