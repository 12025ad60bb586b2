"""External validation's statistics agree with evaluate's; model updating and recalibration behave as promised."""

import numpy as np
import pytest
from scipy import special

from components.evaluate import component as evaluate
from components.evaluate import decision as evaluate_decision
from components.evaluate import validation
from tests.components.evaluate.test_component import PARAMS, _cohort


def _site(patients=3000, intercept=0.0, slope=1.0, seed=0):
    """One image per patient; outcomes drawn from sigmoid(intercept + slope * logit(p)) of the given p."""
    rng = np.random.default_rng(seed)
    probabilities = special.expit(rng.normal(-1.2, 1.0, patients))
    truth = special.expit(intercept + slope * evaluate_decision.logit(probabilities))
    labels = (rng.random(patients) < truth).astype(int)
    return labels, probabilities, np.arange(patients).astype(str)


def test_validation_metrics_on_evaluates_out_of_fold_predictions_are_evaluates_numbers():
    rows = _cohort(seed=3)
    resamples = 200
    record = evaluate.evaluation_record(rows, "original", "patient", None, {**PARAMS, "bootstrap_resamples": resamples})
    observed = record["sets"][evaluate.OBSERVED]
    ours = validation.summarize(rows["label"], rows["probability"], rows["patient"], PARAMS["threshold"], resamples,
                                PARAMS["seed"])
    for mine, theirs in (("roc_auc", "roc_auc"), ("pr_auc", "pr_auc"), ("brier", "brier"),
                         ("sensitivity", "tpr"), ("specificity", "tnr"), ("ppv", "precision")):
        assert ours["estimate"][mine] == observed["pooled"][theirs]
        assert ours["intervals"][mine] == observed["bootstrap"]["intervals"][theirs]
    calibration = observed["calibration"]
    for mine, theirs in (("calibration_slope", "slope"), ("calibration_in_the_large", "intercept")):
        assert ours["estimate"][mine] == calibration[theirs]
        assert ours["intervals"][mine] == calibration["intervals"][theirs]
    patients = evaluate.patient_level({**rows, "fold": np.zeros(len(rows["label"]), int)})  # as pipeline.validate
    ours = validation.summarize(patients["label"], patients["probability"], patients["patient"], PARAMS["threshold"],
                                resamples, PARAMS["seed"])
    theirs = record["sets"][evaluate.PATIENT_LEVEL]
    assert ours["estimate"]["roc_auc"] == theirs["pooled"]["roc_auc"]
    assert ours["intervals"]["roc_auc"] == theirs["bootstrap"]["intervals"]["roc_auc"]
    curve = validation.calibration_curve(rows["label"], rows["probability"], rows["patient"], 50, 0)
    assert len(curve["observed"]) == validation.CURVE_POINTS and np.all(np.isfinite(curve["observed"]))
    assert np.all(np.array(curve["low"]) <= np.array(curve["high"]))


@pytest.mark.parametrize("method", validation.UPDATES)
def test_after_either_update_the_mean_predicted_risk_is_the_observed_death_rate(method):
    labels, probabilities, _ = _site(800, intercept=0.7, slope=0.6, seed=1)
    fitted = validation.fit_update(labels, probabilities, method)
    updated = validation.apply_update(probabilities, fitted["intercept"], fitted["slope"])
    assert np.mean(updated) == pytest.approx(np.mean(labels), abs=1e-9)
    assert validation.observed_expected(labels, updated) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("intercept, slope, expected", [(0.0, 1.0, "original"), (0.8, 1.0, "intercept"),
                                                         (0.0, 0.5, "logistic")])
def test_closed_testing_picks_the_least_extensive_update_the_data_support(intercept, slope, expected):
    labels, probabilities, _ = _site(intercept=intercept, slope=slope)
    assert validation.closed_test(labels, probabilities)["chosen"] == expected


def test_closed_testing_leaves_out_a_logistic_update_that_does_not_converge():
    labels, probabilities = np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert not validation.fit_update(labels, probabilities, "logistic")["converged"]
    tested = validation.closed_test(labels, probabilities)
    assert [(t["null"], t["alternative"]) for t in tested["tests"]] == [("original", "intercept")]
    assert tested["chosen"] in ("original", "intercept")


def test_the_cross_validated_update_is_fitted_on_other_patients_only():
    labels, probabilities, patients = _site(600, intercept=0.8)
    honest = validation.cross_validated_update(labels, probabilities, patients, "intercept", seed=0)
    apparent = validation.fit_update(labels, probabilities, "intercept")
    assert not np.allclose(honest, validation.apply_update(probabilities, apparent["intercept"], 1.0))
    assert np.mean(honest) == pytest.approx(np.mean(labels), abs=0.02)


def test_development_recalibration_is_fitted_and_cross_fitted():
    labels, probabilities, _ = _site(1500, intercept=-0.6, slope=0.5, seed=2)
    fitted = validation.development_recalibration(labels, probabilities)
    assert fitted["applied"] and fitted["slope"] == pytest.approx(0.5, abs=0.12)
    assert fitted["intercept"] == pytest.approx(-0.6, abs=0.15)
    folds = np.arange(len(labels)) % 5
    crossed = validation.cross_fitted(labels, probabilities, folds)
    slope = evaluate_decision.calibration_slope_intercept(labels, crossed)["slope"]
    assert slope == pytest.approx(1.0, abs=0.2)


def test_development_recalibration_is_skipped_with_a_named_reason():
    labels = np.array([1, 0, 1, 0, 0, 0, 1])
    reversed_ranking = np.array([0.1, 0.8, 0.2, 0.7, 0.6, 0.9, 0.75])  # deaths mostly lowest: a negative slope
    skipped = validation.development_recalibration(labels, reversed_ranking)
    assert not skipped["applied"] and "is not positive" in skipped["reason"] and skipped["slope"] < 0
    assert "only one outcome" in validation.development_recalibration([0, 0, 0], [0.1, 0.2, 0.3])["reason"]
    assert "all equal" in validation.development_recalibration([0, 1, 0], [0.5, 0.5, 0.5])["reason"]
    separated = validation.development_recalibration([0, 0, 1, 1], [0.1, 0.2, 0.6, 0.7])
    assert not separated["applied"] and "did not converge" in separated["reason"]


def test_subgroups_are_computed_only_with_enough_of_both_outcomes():
    rows = _cohort(seed=3)
    rows = {**rows, "view": np.where(np.arange(len(rows["label"])) % 2, "PA", "AP Supine")}
    found = validation.subgroups(rows, 0.5, 20, 0)
    assert found["view: PA"]["computed"] and found["view: AP (any AP view)"]["computed"]
    assert not found["age: under 50"]["computed"] and found["age: under 50"]["events"] < validation.MIN_EACH_OUTCOME


def test_the_events_statement_names_riley_and_the_site_count():
    assert "does not" in validation.events_statement(12, 6) and "12 death(s)" in validation.events_statement(12, 6)
    assert "reaches it" in validation.events_statement(150, 120)
