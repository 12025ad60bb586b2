import math

import numpy as np
import pytest

from components.evaluate import metrics as em


def test_fold_metrics_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    probs = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.1, 0.4])
    values = em.metric_values(labels, probs)
    # predicted: 1 1 0 1 0 0 0 0 -> tp 2, fn 1, fp 1, tn 4
    assert values["precision"] == pytest.approx(2 / 3)
    assert values["recall"] == pytest.approx(2 / 3)
    assert values["f1"] == pytest.approx(2 / 3)
    assert values["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    # ROC AUC: fraction of (pos, neg) pairs ranked correctly: 0.9, 0.8 beat all 5; 0.3 beats 0.2, 0.1, 0.1
    assert values["roc_auc"] == pytest.approx((5 + 5 + 3) / 15)
    assert values["brier"] == pytest.approx(np.mean((probs - labels) ** 2))


def test_undefined_metrics_are_nan_not_zero():
    values = em.metric_values(np.array([0, 0, 0]), np.array([0.1, 0.7, 0.2]))
    assert math.isnan(values["roc_auc"]) and math.isnan(values["recall"]) and math.isnan(values["balanced_accuracy"])
    assert values["precision"] == 0.0  # one positive prediction, wrong


def test_summary_pools_the_folds_and_gives_their_spread_beside():
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    labels = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    probs = np.array([0.9, 0.1, 0.2, 0.6, 0.4, 0.7, 0.3, 0.2])
    summary = em.summarize(folds, labels, probs)
    fold0 = em.metric_values(labels[:4], probs[:4])
    fold1 = em.metric_values(labels[4:], probs[4:])
    assert summary["fold_mean"]["recall"]["mean"] == pytest.approx((fold0["recall"] + fold1["recall"]) / 2)
    # pooled: the folds' confusion matrices summed, and every metric on all eight rows at once
    assert summary["confusion"] == {"tp": 2, "fn": 1, "tn": 4, "fp": 1}
    assert {k: summary["pooled"][k] for k in em.RATES} == pytest.approx({"tpr": 2 / 3, "tnr": 0.8, "fpr": 0.2,
                                                                       "fnr": 1 / 3})
    assert summary["pooled"]["roc_auc"] == pytest.approx(em.metric_values(labels, probs)["roc_auc"])
    # the rates per fold: fold 0 finds its one death (tpr 1), fold 1 one of two (tpr 1/2)
    assert (summary["per_fold"][0]["tpr"], summary["per_fold"][1]["tpr"]) == (1.0, 0.5)
    assert summary["fold_mean"]["tpr"] == pytest.approx({"mean": 0.75, "std": 0.25, "folds": 2})


def test_fold_without_positives_is_left_out_of_auc_mean():
    folds = np.array([0, 0, 0, 1, 1, 1])
    labels = np.array([1, 0, 0, 0, 0, 0])
    probs = np.array([0.8, 0.3, 0.1, 0.2, 0.1, 0.3])
    summary = em.summarize(folds, labels, probs)
    assert summary["fold_mean"]["roc_auc"] == {"mean": 1.0, "std": 0.0, "folds": 1}


def _clustered(patients=40, images_per_patient=6, seed=0):
    """Images of one patient share label and probability: a patient is the real unit."""
    rng = np.random.default_rng(seed)
    labels = rng.random(patients) < 0.3
    probs = np.clip(np.where(labels, 0.65, 0.35) + rng.normal(0, 0.2, patients), 0, 1)
    repeat = lambda a: np.repeat(a, images_per_patient)  # noqa: E731
    return repeat(labels.astype(int)), repeat(probs), repeat(np.arange(patients))


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    labels, probs, groups = _clustered()
    first = em.bootstrap(labels, probs, groups, resamples=300, seed=1)
    again = em.bootstrap(labels, probs, groups, resamples=300, seed=1)
    assert first == again
    auc = em.metric_values(labels, probs)["roc_auc"]
    interval = first["intervals"]["roc_auc"]
    assert interval["low"] < auc < interval["high"]
    assert first["unit_count"] == 40


def test_resampling_patients_gives_wider_intervals_than_images_when_images_repeat():
    labels, probs, groups = _clustered()
    by_patient = em.bootstrap(labels, probs, groups, resamples=400, seed=0)["intervals"]["roc_auc"]
    by_image = em.bootstrap(labels, probs, np.arange(len(labels)), resamples=400, seed=0)["intervals"]["roc_auc"]
    assert (by_patient["high"] - by_patient["low"]) > 1.5 * (by_image["high"] - by_image["low"])


def _cases():
    """Random probabilities, tied ones (rounded to a few values), one class only, nothing called died."""
    rng = np.random.default_rng(3)
    for n in (5, 40, 157):
        for _ in range(15):
            labels = (rng.random(n) < rng.uniform(0.1, 0.6)).astype(int)
            probabilities = np.clip(0.3 * labels + rng.uniform(0, 0.8, n), 0, 1)
            yield labels, probabilities
            yield labels, np.round(probabilities, 1)
    yield np.zeros(10, int), rng.random(10)
    yield np.ones(10, int), rng.random(10)
    yield np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])  # none at >= 0.5


def test_the_metrics_are_scikit_learns():
    """Computed from the counts and one sort, they must equal sklearn's own functions (NaN where sklearn's
    value is undefined: one class, or no image called died for precision)."""
    import warnings

    from sklearn import metrics as skm

    for labels, probabilities in _cases():
        predicted = (probabilities >= 0.5).astype(int)
        both, positives = len(np.unique(labels)) == 2, labels.any()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = {
                "balanced_accuracy": skm.balanced_accuracy_score(labels, predicted) if both else math.nan,
                "roc_auc": skm.roc_auc_score(labels, probabilities) if both else math.nan,
                "pr_auc": skm.average_precision_score(labels, probabilities) if positives else math.nan,
                "precision": skm.precision_score(labels, predicted, zero_division=0) if predicted.any() else math.nan,
                "recall": skm.recall_score(labels, predicted) if positives else math.nan,
                "f1": skm.f1_score(labels, predicted, zero_division=0) if positives else math.nan,
                "brier": skm.brier_score_loss(labels, probabilities, pos_label=1),
            }
        values = em.metric_values(labels, probabilities)
        for name, value in expected.items():
            assert values[name] == pytest.approx(value, abs=1e-12, nan_ok=True), (name, labels, probabilities)


def test_the_paired_difference_over_repeats_is_the_mean_of_each_repeats_on_the_same_resamples():
    rng = np.random.default_rng(5)
    labels = (rng.random(60) < 0.3).astype(int)
    groups = np.repeat(np.arange(30), 2)
    first, second = (np.clip(w * labels + rng.uniform(0, 0.8, (3, 60)), 0, 1) for w in (0.1, 0.4))
    repeated = em.paired_auc_difference(labels, first, second, groups, resamples=200, seed=1)
    singles = [em.paired_auc_difference(labels, a, b, groups, resamples=200, seed=1) for a, b in zip(first, second)]
    assert repeated["difference"] == pytest.approx(np.mean([s["difference"] for s in singles]))
    assert repeated["roc_auc_second"] == pytest.approx(np.mean([s["roc_auc_second"] for s in singles]))
    assert repeated["low"] < repeated["difference"] < repeated["high"]
    # Averaging over repeats narrows the interval of the one draw of folds' noise.
    assert repeated["high"] - repeated["low"] < np.mean([s["high"] - s["low"] for s in singles])
