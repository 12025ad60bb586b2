import numpy as np
import pytest

from components.evaluate import decision as ed


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("intercept,slope", [(0.0, 1.0), (-0.7, 0.5), (0.4, 1.6)])
def test_slope_and_intercept_recover_a_known_miscalibration(intercept, slope):
    rng = np.random.default_rng(7)
    predicted = _sigmoid(rng.normal(-1.0, 1.5, 200_000))
    truth = _sigmoid(intercept + slope * np.log(predicted / (1 - predicted)))
    labels = rng.random(len(truth)) < truth
    fitted = ed.calibration_slope_intercept(labels, predicted)
    assert fitted["slope"] == pytest.approx(slope, abs=0.03)
    if slope == 1.0:  # with the slope right, calibration-in-the-large is the intercept itself
        assert fitted["intercept"] == pytest.approx(intercept, abs=0.03)


def test_intercept_is_negative_when_risks_are_overestimated():
    rng = np.random.default_rng(1)
    true_risk = rng.uniform(0.05, 0.4, 50_000)
    labels = rng.random(len(true_risk)) < true_risk
    fitted = ed.calibration_slope_intercept(labels, np.minimum(true_risk * 2, 0.95))
    assert fitted["intercept"] < -0.3


def test_one_class_gives_nan_not_a_number_that_looks_real():
    assert np.isnan(ed.calibration_slope_intercept([0, 0, 0], [0.1, 0.2, 0.3])["slope"])


def test_net_benefit_by_hand():
    # 10 cases, 3 died. At t = 0.25 the model treats 4 (p >= 0.25): 2 who died, 2 who survived.
    labels = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    probabilities = [0.9, 0.3, 0.1, 0.25, 0.6, 0.2, 0.1, 0.1, 0.05, 0.0]
    assert ed.net_benefit(labels, probabilities, 0.25) == pytest.approx(2 / 10 - 2 / 10 * (0.25 / 0.75))
    curve = ed.decision_curve(labels, probabilities, thresholds=[0.25, 0.5])
    first, second = curve["rows"]
    assert first["treat_all"] == pytest.approx(0.3 - 0.7 * (0.25 / 0.75)) and first["treat_none"] == 0.0
    assert second["model"] == pytest.approx(1 / 10 - 1 / 10 * 1.0)  # treats 0.9 and 0.6: one died, one not
    assert curve["prevalence"] == pytest.approx(0.3)


def test_a_perfect_model_has_the_prevalence_as_net_benefit_everywhere():
    labels = np.array([1] * 20 + [0] * 80)
    curve = ed.decision_curve(labels, labels.astype(float))
    assert all(r["model"] == pytest.approx(0.2) for r in curve["rows"])
    assert curve["thresholds_where_model_beats_both"] == list(ed.DECISION_THRESHOLDS)
    assert ed.DECISION_THRESHOLDS[0] == 0.05 and ed.DECISION_THRESHOLDS[-1] == 0.5
