"""Repeated cross-validation (`--repeats` > 1): the estimate over repeats, its interval and its spread.

Each repeat's folds validate every row once, so each repeat gives one pooled
out-of-fold estimate per metric (on observed labels). The reported value is
the mean of those estimates over repeats: it no longer hangs on one draw of
the folds. Its 95% interval resamples patients (images under an image split),
the same resample for every repeat: each draw's value is the mean over repeats
of the pooled metric on the drawn rows, so the interval reflects the patients
one could have had, as the single split's bootstrap does. The spread (sd,
min, max over repeats) is how far the estimate moves with the split alone.
Beside the metrics of the decision rule, each repeat gives the calibration slope
of its pooled predictions. What is known at admission is refitted on every
repeat's folds (`clinical_baseline`: age and sex alone, and with the image's
log-odds) and summarised the same way, on the same resamples, so the X-ray is
compared with age and sex over the same repeats: `image_minus_age_sex` is the mean
over repeats of the paired ROC AUC difference, with its interval. An estimate of the
recalibrated probabilities export serves is summarised too (`recalibrated`): each repeat's
predictions recalibrated fold by fold on the other folds' (`validation.cross_fitted`). It
approximates what is served, not reproduces it: export fits one recalibration on every
repeat's predictions pooled, while this refits one per fold of each repeat on fewer rows, so
that no prediction is recalibrated by a fit that saw its own label.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from common.errors import PipelineError
from common.files import atomic_open
from components.evaluate import clinical_baseline
from components.evaluate import decision as evaluate_decision
from components.evaluate import metrics as evaluate_metrics
from components.evaluate import validation
from components.evaluate.outputs import REPEATED_AGE_SEX as AGE_SEX, REPEATED_IMAGE_AGE_SEX as IMAGE_AGE_SEX
from components.evaluate.outputs import REPEATS_TABLE_NAME as TABLE_NAME  # noqa: F401  (re-exported)
from components.train import outputs as train_outputs

METRICS = (*evaluate_metrics.METRICS, "calibration_slope")
RECALIBRATED = "image_recalibrated_cross_fitted"  # the table's set name for `recalibrated`


def aligned_repeats(train_dir: Path, repeats: int) -> dict[str, np.ndarray]:
    """Every repeat's observed-label out-of-fold predictions, rows in source_id order:
    source_id, patient, label (N,), and probability and fold (repeats, N)."""
    columns = None
    probabilities, folds = [], []
    for repeat in range(repeats):
        rows = train_outputs.read_predictions(train_outputs.repeat_dir(train_dir, repeat))
        observed = rows["label_source"] == "observed"
        order = np.argsort(rows["source_id"][observed], kind="stable")
        rows = {name: values[observed][order] for name, values in rows.items()}
        if columns is None:
            columns = {name: rows[name] for name in ("source_id", "patient", "label")}
        elif not (np.array_equal(rows["source_id"], columns["source_id"])
                  and np.array_equal(rows["label"], columns["label"])):
            raise PipelineError(f"{train_outputs.repeat_dir(train_dir, repeat)}: repeat {repeat} validated other "
                                f"observed-label rows than repeat 0; every repeat must validate every row once")
        probabilities.append(rows["probability"])
        folds.append(rows["fold"])
    return {**columns, "probability": np.stack(probabilities), "fold": np.stack(folds)}


def admission_repeats(rows: Mapping[str, np.ndarray], admission: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """The admission baselines' out-of-fold probabilities (repeats, N), fitted on each repeat's own folds;
    `admission` is (N, 2) age and sex of `rows` (NaN where unknown)."""
    labels = rows["label"]
    fitted = {AGE_SEX: [], IMAGE_AGE_SEX: []}
    for probability, folds in zip(rows["probability"], rows["fold"]):
        fitted[AGE_SEX].append(clinical_baseline.out_of_fold(admission, labels, folds))
        fitted[IMAGE_AGE_SEX].append(clinical_baseline.combined(probability, admission, labels, folds))
    return {name: {**rows, "probability": np.stack(values)} for name, values in fitted.items()}


def repeat_values(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """One repeat's pooled metrics and the calibration slope of its predictions."""
    return {**evaluate_metrics.metric_values(labels, probabilities, threshold),
            "calibration_slope": evaluate_decision.calibration_slope_intercept(labels, probabilities)["slope"]}


def _mean_over_repeats(per_repeat: list[dict[str, float]]) -> dict[str, float]:
    """Per metric, the mean over the repeats where it is defined (NaN where it is in none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric undefined in every repeat
        return {name: float(np.nanmean([values[name] for values in per_repeat])) for name in METRICS}


def repeated_metrics(rows: Mapping[str, np.ndarray], split: str, threshold: float, resamples: int,
                     seed: int, level: float = 0.95) -> dict[str, Any]:
    """Per-repeat pooled estimates, and per metric their mean, its bootstrap interval and their spread."""
    labels, probabilities = rows["label"], rows["probability"]
    per_repeat = [repeat_values(labels, repeat, threshold) for repeat in probabilities]
    groups = evaluate_metrics.resample_units(rows, split)
    draws: dict[str, list[float]] = {name: [] for name in METRICS}
    for chosen in evaluate_metrics.group_resamples(groups, resamples, seed):
        means = _mean_over_repeats([repeat_values(labels[chosen], repeat[chosen], threshold)
                                    for repeat in probabilities])
        for name in METRICS:
            draws[name].append(means[name])
    mean = _mean_over_repeats(per_repeat)
    tail = (1 - level) / 2 * 100
    metrics = {}
    for name in METRICS:
        estimates = np.array([values[name] for values in per_repeat])
        finite_estimates = estimates[~np.isnan(estimates)]
        finite_draws = np.array([d for d in draws[name] if not math.isnan(d)])
        metrics[name] = {
            "mean": mean[name],
            "ci_low": float(np.percentile(finite_draws, tail)) if len(finite_draws) else math.nan,
            "ci_high": float(np.percentile(finite_draws, 100 - tail)) if len(finite_draws) else math.nan,
            "sd": float(np.std(finite_estimates, ddof=1)) if len(finite_estimates) > 1 else math.nan,
            "min": float(finite_estimates.min()) if len(finite_estimates) else math.nan,
            "max": float(finite_estimates.max()) if len(finite_estimates) else math.nan,
            "repeats": int(len(finite_estimates)), "valid_resamples": int(len(finite_draws)),
        }
    return {"repeats": len(per_repeat), "per_repeat": per_repeat, "metrics": metrics, "level": level,
            "resamples": resamples, "unit": evaluate_metrics.resample_unit(split),
            "unit_count": int(len(np.unique(groups))), "n": int(len(labels)), "positives": int(np.sum(labels))}


def recalibrated(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`aligned_repeats` rows with each repeat's probabilities cross-fitted by its own folds."""
    return {**rows, "probability": np.stack([validation.cross_fitted(rows["label"], probability, folds)
                                             for probability, folds in zip(rows["probability"], rows["fold"])])}


def write_table(path: Path, result: Mapping[str, Any]) -> None:
    """One row per set and metric (the image model's first, then its cross-fitted recalibration's, an estimate of
    the served calibration refitted per repeat rather than export's one pooled fit, then the admission
    baselines'): the mean over repeats, its interval, the spread, then each repeat's estimate."""
    repeats = range(result["repeats"])
    sets = {"image": result, **({RECALIBRATED: result["recalibrated"]} if "recalibrated" in result else {}),
            **result.get("baselines", {})}
    with atomic_open(path, "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["set", "metric", "mean_over_repeats", "ci_low", "ci_high", "sd_over_repeats", "min", "max",
                        *(f"repeat_{r}" for r in repeats)])
        for set_name, summary in sets.items():
            for name, m in summary["metrics"].items():
                table.writerow([set_name, name, m["mean"], m["ci_low"], m["ci_high"], m["sd"], m["min"], m["max"],
                                *(summary["per_repeat"][r][name] for r in repeats)])


def run(train_dir: Path, train_summary: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path,
        admission: Mapping[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """evaluate.run's part for repeated CV: the record (with each repeat's split seed) and `TABLE_NAME`;
    with `admission` (source_id -> (age, sex)), the admission baselines under `baselines`."""
    rows = aligned_repeats(train_dir, train_summary["params"]["repeats"])
    summarise = lambda selected: repeated_metrics(  # noqa: E731  (one seed: the same resamples for every set)
        selected, train_summary["split"], params["threshold"], params["bootstrap_resamples"], params["seed"])
    result = summarise(rows)
    result["split_seeds"] = train_summary["split_seeds"]
    result["recalibrated"] = {key: value for key, value in summarise(recalibrated(rows)).items()
                              if key in ("per_repeat", "metrics")}
    if admission is not None:
        missing = [sid for sid in rows["source_id"] if sid not in admission]
        if missing:
            raise PipelineError(f"evaluate: {len(missing)} validated image(s) without admission facts, "
                                f"e.g. {str(missing[0])!r}")
        features = np.array([admission[sid] for sid in rows["source_id"]], float).reshape(-1, 2)
        baselines = admission_repeats(rows, features)
        result["baselines"] = {name: {key: value for key, value in summarise(baseline).items()
                                      if key in ("per_repeat", "metrics")}
                               for name, baseline in baselines.items()}
        result["image_minus_age_sex"] = evaluate_metrics.paired_auc_difference(
            rows["label"], baselines[AGE_SEX]["probability"], rows["probability"],
            evaluate_metrics.resample_units(rows, train_summary["split"]),
            params["bootstrap_resamples"], params["seed"])
    write_table(Path(out_dir) / TABLE_NAME, result)
    return result
