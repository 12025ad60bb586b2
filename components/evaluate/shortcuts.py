"""The shortcut audit's measures (issue #34, "The X-ray or the journal?"), as pure functions over arrays.

A model can rank deaths by where an X-ray came from (a journal's case report, a country's hospitals, a
bedside AP film) rather than by the lungs (DeGrave et al., Nature Machine Intelligence 2021). The rules
are fixed in results/README.md ("Rules for the shortcut audit"); each measure here is one of them:

- `probe_out_of_fold`: can the frozen features tell the provenance? The linear probe's own rule
  (`linear_probe.fit`: C by inner patient-grouped CV of the training fold) fitted on a provenance target.
- `baseline_out_of_fold` and `site_death_rate`: what ranks deaths without a pixel, fitted on the training
  folds only (the site's death rate too: a validation label never enters it).
- `within_stratum`: the ranking inside one source type, site or view, where both outcomes occur.
- `paired_gain`: the X-ray's ROC AUC over the best of those baselines, on the same patient resamples.

Probabilities and scores are (repeats, N): every repeat's folds validate every row once; each value is the
mean over repeats of the pooled out-of-fold estimate, and each bootstrap draws the same patients for every
repeat (as `repeats`), so intervals describe the patients one could have had.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from components.evaluate import clinical_baseline
from components.evaluate import metrics as evaluate_metrics
from components.train import linear_probe

ONE_OUTCOME = "one outcome"  # a stratum whose images all survived (or all died): no ROC AUC, not scored
SCORED = "scored"


def probe_out_of_fold(features: np.ndarray, target: np.ndarray, patients: np.ndarray, folds: np.ndarray,
                      rebalance: str, seed: int) -> tuple[np.ndarray, list[float]]:
    """(decision value of `target` for each row from a probe fitted on the other folds, C of each fold).

    The probe's rule as `--method=linear_probe` applies it (seed + fold for the inner CV, as its folds use);
    a training side with one class gives every held-out row 0 (no ranking) and C NaN."""
    features, target, folds = np.asarray(features, float), np.asarray(target, int), np.asarray(folds)
    scores, chosen = np.full(len(target), math.nan), []
    for fold in np.unique(folds):
        held_out = folds == fold
        if len(np.unique(target[~held_out])) < 2:
            scores[held_out], chosen = 0.0, [*chosen, math.nan]
            continue
        probe = linear_probe.fit(features[~held_out], target[~held_out], np.asarray(patients)[~held_out], rebalance,
                                 seed + int(fold))
        scores[held_out] = (features[held_out] - probe.mean) / probe.scale @ probe.coef + probe.intercept
        chosen.append(probe.c)
    return scores, chosen


def site_death_rate(sites: np.ndarray, patients: np.ndarray, labels: np.ndarray,
                    training: np.ndarray) -> np.ndarray:
    """Each row's site death rate from the training rows' patients alone: (deaths + r) / (patients + 1), r the
    training patients' death rate, so a site without training patients gets r."""
    sites, patients, labels = np.asarray(sites), np.asarray(patients), np.asarray(labels, int)
    died: dict[str, int] = {}
    site_of: dict[str, str] = {}
    for patient, site, label in zip(patients[training], sites[training], labels[training]):
        died[patient] = max(died.get(patient, 0), int(label))
        site_of.setdefault(patient, site)
    rate = float(np.mean(list(died.values())))
    per_site: dict[str, list[int]] = {}
    for patient, outcome in died.items():
        per_site.setdefault(site_of[patient], []).append(outcome)
    shrunk = {site: (sum(outcomes) + rate) / (len(outcomes) + 1) for site, outcomes in per_site.items()}
    return np.array([shrunk.get(site, rate) for site in sites], float)


def baseline_out_of_fold(features: Callable[[np.ndarray], np.ndarray], labels: np.ndarray,
                         folds: np.ndarray) -> np.ndarray:
    """Probability of death for each row from `clinical_baseline`'s logistic regression fitted on the other
    folds; `features(training_mask)` gives every row's (N, d) features computed from the training rows only."""
    labels, folds = np.asarray(labels, int), np.asarray(folds)
    probabilities = np.full(len(labels), math.nan)
    for fold in np.unique(folds):
        held_out = folds == fold
        x = np.asarray(features(~held_out), float).reshape(len(labels), -1)
        probabilities[held_out] = clinical_baseline.fit_predict(x[~held_out], labels[~held_out], x[held_out])
    return probabilities


def mean_auc(labels: np.ndarray, scores: np.ndarray) -> Callable[[np.ndarray], float]:
    """rows -> the mean over repeats of the pooled ROC AUC of those rows (NaN when they hold one class)."""
    labels, scores = np.asarray(labels, int), np.atleast_2d(np.asarray(scores, float))

    def statistic(rows: np.ndarray) -> float:
        if len(np.unique(labels[rows])) < 2:
            return math.nan
        return float(np.mean([evaluate_metrics.roc_auc(labels[rows], repeat[rows]) for repeat in scores]))
    return statistic


def macro_auc(classes: np.ndarray, scores: Mapping[str, np.ndarray]) -> Callable[[np.ndarray], float]:
    """rows -> the mean over classes of one-vs-rest `mean_auc` (each class's own scores), over the classes
    whose one-vs-rest split the rows hold both sides of."""
    classes = np.asarray(classes)
    per_class = [mean_auc(classes == name, values) for name, values in scores.items()]

    def statistic(rows: np.ndarray) -> float:
        values = [value for value in (auc(rows) for auc in per_class) if not math.isnan(value)]
        return float(np.mean(values)) if values else math.nan
    return statistic


def bootstrap(statistic: Callable[[np.ndarray], float], groups: np.ndarray, resamples: int, seed: int,
              level: float = 0.95) -> dict[str, float]:
    """The statistic on every row and its percentile interval over resamples of whole groups (patients)."""
    groups = np.asarray(groups)
    draws = [statistic(chosen) for chosen in evaluate_metrics.group_resamples(groups, resamples, seed)]
    return {"estimate": statistic(np.arange(len(groups))), **evaluate_metrics.percentile_interval(draws, level)}


def within_stratum(labels: np.ndarray, scores: np.ndarray, inside: np.ndarray, patients: np.ndarray,
                   resamples: int, seed: int) -> dict[str, float | int | str]:
    """The ranking inside one stratum (rows where `inside`): its images, patients and deaths, and, when both
    outcomes occur, the mean-over-repeats ROC AUC with its patient-bootstrap interval; else `ONE_OUTCOME`."""
    labels, patients = np.asarray(labels, int)[inside], np.asarray(patients)[inside]
    scores = np.atleast_2d(np.asarray(scores, float))[:, inside]
    counts = {"images": int(len(labels)), "image_deaths": int(labels.sum()),
              "patients": int(len(np.unique(patients))),
              "patient_deaths": int(len(np.unique(patients[labels == 1])))}
    if len(np.unique(labels)) < 2:
        return {**counts, "status": ONE_OUTCOME}
    return {**counts, "status": SCORED, **bootstrap(mean_auc(labels, scores), patients, resamples, seed)}


def best_baseline(baselines: Mapping[str, np.ndarray], labels: np.ndarray) -> str:
    """The name of the baseline with the highest mean-over-repeats ROC AUC (the first, on a tie)."""
    everything = np.arange(len(labels))
    aucs = {name: mean_auc(labels, scores)(everything) for name, scores in baselines.items()}
    return max(aucs, key=lambda name: (aucs[name], -list(aucs).index(name)))


def paired_gain(labels: np.ndarray, baseline: np.ndarray, model: np.ndarray, patients: np.ndarray,
                resamples: int, seed: int) -> dict[str, float]:
    """The model's mean-over-repeats ROC AUC minus the baseline's, with the comparison table's paired
    patient-bootstrap interval (`metrics.paired_auc_difference`)."""
    return evaluate_metrics.paired_auc_difference(labels, baseline, model, patients, resamples, seed)


def strata(named: Mapping[str, Sequence[str]]) -> list[tuple[str, str, np.ndarray]]:
    """(kind, stratum, rows inside it) for every value of every kind ({'source type': each row's type, ...}),
    in order of kind, then of stratum name."""
    out = []
    for kind, values in named.items():
        values = np.asarray(values)
        out += [(kind, name, values == name) for name in sorted(set(values.tolist()))]
    return out
