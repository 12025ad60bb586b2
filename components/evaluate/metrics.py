"""The study's metrics on out-of-fold predictions, with bootstrap confidence intervals.

Positive class = died. Every metric (balanced accuracy, ROC AUC, precision, recall, F1, PR AUC,
Brier, and the rates TPR/TNR/FPR/FNR) is computed twice: on the pooled out-of-fold predictions
(the estimate, one number for all validation rows) and per fold (mean and sd: how much the folds
spread; the study reported fold means). The interval is the percentile bootstrap of the pooled
statistic itself, resampling whole patients when the split kept patients apart, images otherwise,
so estimate and interval describe the same quantity. At a fixed threshold the pooled confusion
matrix is the sum of the folds', so the pooled rates are those of the summed matrix. Calibration
(reliability bins and expected calibration error) judges the probabilities themselves, which the
ranking metrics do not.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from common.decision import called_died
from components.evaluate.outputs import CALIBRATION_BINS, METRICS, RATES, SCORES  # noqa: F401  (re-exported)



def confusion(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    labels, predicted = np.asarray(labels, bool), np.asarray(predicted, bool)
    return {"tp": int(np.sum(labels & predicted)), "fn": int(np.sum(labels & ~predicted)),
            "tn": int(np.sum(~labels & ~predicted)), "fp": int(np.sum(~labels & predicted))}


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when there is nothing to divide by (a rate of an empty group)."""
    return numerator / denominator if denominator else math.nan


def rates(counts: Mapping[str, int]) -> dict[str, float]:
    positives, negatives = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
    return {"tpr": ratio(counts["tp"], positives), "tnr": ratio(counts["tn"], negatives),
            "fpr": ratio(counts["fp"], negatives), "fnr": ratio(counts["fn"], positives)}


def _ranked_counts(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct probability, highest first (sklearn's `_binary_clf_curve`)."""
    order = np.argsort(-probabilities, kind="mergesort")
    ranked = probabilities[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(labels[order])[last_of_each].astype(float)
    return tps, last_of_each + 1 - tps


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Area under the ROC curve of two-class labels, as sklearn's `roc_auc_score`."""
    tps, fps = _ranked_counts(labels, probabilities)
    return float(np.trapezoid(np.r_[0, tps] / tps[-1], np.r_[0, fps] / fps[-1]))


def _average_precision(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Sum over thresholds of (recall gained) x precision there, as sklearn's `average_precision_score`."""
    tps, fps = _ranked_counts(labels, probabilities)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0, recall]) * tps / (tps + fps)))


def metric_values(labels: Sequence[int], probabilities: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Every metric of `METRICS`; those undefined on one class (ROC/PR AUC, recall...) are NaN, not 0.

    The definitions are scikit-learn's (tests compare them on random, tied and one-class inputs), computed
    from the confusion matrix and one sort: a bootstrap evaluates them thousands of times, and sklearn's
    input checks cost more than the arithmetic."""
    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    counts = confusion(labels, called_died(probabilities, threshold))
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    both = len(np.unique(labels)) == 2
    positives = bool(labels.any())
    rate = rates(counts)
    values = {
        "balanced_accuracy": (rate["tpr"] + rate["tnr"]) / 2 if both else math.nan,
        "roc_auc": roc_auc(labels, probabilities) if both else math.nan,
        "pr_auc": _average_precision(labels, probabilities) if positives else math.nan,
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "recall": rate["tpr"] if positives else math.nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if positives else math.nan,
        "brier": float(np.mean((labels - probabilities) ** 2)) if len(labels) else math.nan,
        **rate,
    }
    return {name: float(value) for name, value in values.items()}


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    finite = [v for v in values if not math.isnan(v)]
    return {"mean": float(np.mean(finite)) if finite else math.nan,
            "std": float(np.std(finite)) if finite else math.nan,
            "folds": len(finite)}


def summarize(folds: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
              threshold: float = 0.5) -> dict[str, Any]:
    """The pooled metrics and confusion matrix, and per-fold metrics with their means (+- sd)."""
    per_fold = {}
    for fold in sorted(np.unique(folds)):
        mask = folds == fold
        per_fold[int(fold)] = {**metric_values(labels[mask], probabilities[mask], threshold),
                               **confusion(labels[mask], called_died(probabilities[mask], threshold))}
    return {
        "pooled": metric_values(labels, probabilities, threshold),
        "confusion": confusion(labels, called_died(probabilities, threshold)),
        "per_fold": per_fold,
        "fold_mean": {name: _mean_std([m[name] for m in per_fold.values()]) for name in METRICS},
        "n": int(len(labels)), "positives": int(np.sum(labels)),
    }


# The splits that keep each patient's images in one fold (the site split leaves whole patients' sites out).
PATIENT_GROUPED_SPLITS = ("patient", "site")


def resample_units(rows: Mapping[str, np.ndarray], split: str) -> np.ndarray:
    """What a bootstrap draws: patients when the split kept them apart, else images."""
    return rows["patient"] if split in PATIENT_GROUPED_SPLITS else rows["source_id"]


def resample_unit(split: str) -> str:
    """The name of what `resample_units` draws."""
    return "patient" if split in PATIENT_GROUPED_SPLITS else "image"


def group_resamples(groups: np.ndarray, resamples: int, seed: int):
    """Row indices of `resamples` bootstrap samples that draw whole groups with replacement."""
    rng = np.random.default_rng(seed)
    unique, index = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(index == g) for g in range(len(unique))]
    for _ in range(resamples):
        yield np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])


def percentile_interval(samples: Sequence[float], level: float) -> dict[str, float]:
    """{'low', 'high', 'valid_resamples'} of the finite `samples` (NaN when there are none)."""
    finite = np.array([s for s in samples if not math.isnan(s)])
    tail = (1 - level) / 2 * 100
    return {"low": float(np.percentile(finite, tail)) if len(finite) else math.nan,
            "high": float(np.percentile(finite, 100 - tail)) if len(finite) else math.nan,
            "valid_resamples": int(len(finite))}


def bootstrap(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, resamples: int, seed: int,
              statistic: Callable[[np.ndarray, np.ndarray], Mapping[str, float]] = metric_values,
              level: float = 0.95) -> dict[str, Any]:
    """Percentile intervals of each value `statistic(labels, probabilities)` returns on the pooled rows,
    resampling whole groups with replacement; the same seed draws the same resamples for any statistic."""
    draws: dict[str, list[float]] = collections.defaultdict(list)
    for chosen in group_resamples(groups, resamples, seed):
        for name, value in statistic(labels[chosen], probabilities[chosen]).items():
            draws[name].append(value)
    return {"level": level, "resamples": resamples, "unit_count": int(len(np.unique(groups))),
            "intervals": {name: percentile_interval(samples, level) for name, samples in draws.items()}}


def paired_auc_difference(labels: np.ndarray, first: np.ndarray, second: np.ndarray, groups: np.ndarray,
                          resamples: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Pooled ROC AUC of two sets of probabilities for the same rows, and `second - first` with a percentile
    interval from the same group resamples for both, so what the rows share cancels out of the difference.
    With (repeats, N) probabilities (repeated CV, each repeat on its own folds) every value is the mean over
    repeats, and each resample draws the same groups for every repeat."""
    labels = np.asarray(labels, int)
    first, second = np.atleast_2d(np.asarray(first, float)), np.atleast_2d(np.asarray(second, float))

    def mean_auc(probabilities, rows):
        return float(np.mean([roc_auc(labels[rows], repeat[rows]) for repeat in probabilities]))

    differences = []
    for chosen in group_resamples(groups, resamples, seed):
        if len(np.unique(labels[chosen])) == 2:
            differences.append(mean_auc(second, chosen) - mean_auc(first, chosen))
    everything = np.arange(len(labels))
    auc_first, auc_second = mean_auc(first, everything), mean_auc(second, everything)
    return {"roc_auc_first": auc_first, "roc_auc_second": auc_second,
            "difference": float(auc_second - auc_first), **percentile_interval(differences, level),
            "level": level, "resamples": resamples, "unit_count": int(len(np.unique(groups)))}


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability of the probabilities: per equal-width probability bin, the observed died fraction
    beside the mean predicted probability; ECE = their count-weighted mean gap over non-empty bins.

    This measures how far the probabilities can be read as risks as they are; the recalibration export
    serves is fitted elsewhere (`validation.development_recalibration`) and judged on its own set.
    """
    labels, probabilities = np.asarray(labels, float), np.asarray(probabilities, float)
    index = np.clip(np.floor(probabilities * bins).astype(int), 0, bins - 1)  # p = 1 goes to the last bin
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        table.append({"low": b / bins, "high": (b + 1) / bins, "count": count,
                      "mean_predicted": float(probabilities[members].mean()) if count else math.nan,
                      "observed_fraction": float(labels[members].mean()) if count else math.nan})
    gaps = [row["count"] * abs(row["observed_fraction"] - row["mean_predicted"]) for row in table if row["count"]]
    return {"bins": table, "ece": float(sum(gaps) / len(labels)) if len(labels) else math.nan,
            "base_rate": float(labels.mean()) if len(labels) else math.nan}
