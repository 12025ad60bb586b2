"""Paired comparisons between two runs on the same images: what training on imputed labels does to the
ranking of the observed ones, and what a re-run of the same variants changed (`python -m pipeline.study`
tabulates both)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from common.errors import PipelineError
from components import configs
from components.evaluate import metrics as evaluate_metrics
from components.train import outputs as train_outputs


def imputation_pairs() -> list[tuple[str, str]]:
    """(original variant, imputed variant) with the same balancing, e.g. (original_weights, imputed_weights)."""
    by_balancing = {}
    for variant, (labels, balancing) in configs.VARIANTS.items():
        by_balancing.setdefault(balancing, {})[labels] = variant
    return [(pair["observed"], pair["observed+imputed"]) for pair in by_balancing.values()]


def observed_predictions(run_dir: Path) -> dict[str, tuple[str, int, float]]:
    """{source_id: (patient, label, probability)} of the observed-label images of a train artifact or of a run
    folder a study kept (the same fold_<k>/predictions.csv layout)."""
    predictions = train_outputs.read_predictions(run_dir)
    columns = zip(*(predictions[k] for k in ("source_id", "patient", "label", "label_source", "probability")))
    return {str(sid): (str(patient), int(label), float(probability))
            for sid, patient, label, source, probability in columns if source == "observed"}


def paired_roc_auc(first_dir: Path, second_dir: Path, split: str, resamples: int, seed: int,
                   names: str) -> dict[str, Any]:
    """Pooled out-of-fold ROC AUC of two runs on the same observed-label images and `second - first`, with a
    paired bootstrap interval (patients resampled under a patient-grouped split); `names` says which runs in
    the error when they scored different images."""
    first, second = observed_predictions(Path(first_dir)), observed_predictions(Path(second_dir))
    if first.keys() != second.keys():
        raise PipelineError(f"{names} scored different observed images, e.g. "
                            f"{sorted(first.keys() ^ second.keys())[0]!r}: their runs are not comparable")
    ids = sorted(first)
    labels = np.array([first[sid][1] for sid in ids])
    groups = np.array([first[sid][0] if split in evaluate_metrics.PATIENT_GROUPED_SPLITS else sid for sid in ids])
    effect = evaluate_metrics.paired_auc_difference(
        labels, np.array([first[sid][2] for sid in ids]), np.array([second[sid][2] for sid in ids]), groups,
        resamples, seed)
    return {"images": len(ids), "deaths": int(labels.sum()), **effect}


def imputation_effect(runs: Sequence[Mapping[str, Any]], resamples: int, seed: int) -> list[dict[str, Any]]:
    """What training on imputed labels does to the ranking of the observed ones: for each balancing run both
    ways, pooled out-of-fold ROC AUC of both variants on the same observed-label images and the difference,
    imputed - original, with a paired bootstrap interval."""
    by_key = {(run["variant"], run["arch"]): run for run in runs}
    rows = []
    archs = dict.fromkeys(run["arch"] for run in runs)
    for (original, imputed), arch in itertools.product(imputation_pairs(), archs):
        if (original, arch) not in by_key or (imputed, arch) not in by_key:
            continue
        split = by_key[original, arch]["split"]
        rows.append({"original": original, "imputed": imputed, "arch": arch, "split": split,
                     **paired_roc_auc(by_key[original, arch]["artifacts"]["train"],
                                      by_key[imputed, arch]["artifacts"]["train"], split, resamples, seed,
                                      f"{original} and {imputed} ({arch})")})
    return rows


def rerun_effect(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]], resamples: int,
                 seed: int) -> list[dict[str, Any]]:
    """The same variants run twice, before and after a change (e.g. imputation moved inside the folds): for
    each variant and model both ran, in `before`'s order, ROC AUC before and after on the same observed-label
    images (each with its run's own bootstrap interval) and after - before with a paired interval. Each run
    is one of `pipeline.study.committed_runs`: its kept folder, evaluation, results folder and commit."""
    later = {(run["variant"], run["arch"]): run for run in after}
    rows = []
    for run in before:
        match = later.get((run["variant"], run["arch"]))
        if match is None:
            continue
        row = {"variant": run["variant"], "arch": run["arch"], "split": run["split"],
               "results_dir_before": run["results_dir"], "results_dir_after": match["results_dir"],
               "git_commit_before": run["git_commit"], "git_commit_after": match["git_commit"],
               **paired_roc_auc(run["run_dir"], match["run_dir"], run["split"], resamples, seed,
                                f"{run['variant']} {run['arch']} before and after")}
        for name, side in (("first", run), ("second", match)):
            metrics = side["evaluation"]["metrics"]
            row[f"roc_auc_{name}_ci"] = f"{metrics['roc_auc']['ci_low']:.3f}-{metrics['roc_auc']['ci_high']:.3f}"
            row[f"balanced_accuracy_{name}"] = metrics["balanced_accuracy"]["estimate"]
        rows.append(row)
    return rows
