"""Paired comparisons between two runs on the same images: what training on imputed labels does to the
ranking of the observed ones (`python -m pipeline.study` tabulates it)."""

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


def _observed_by_source_id(train_dir: Path) -> dict[str, tuple[str, int, float]]:
    predictions = train_outputs.read_predictions(train_dir)
    columns = zip(*(predictions[k] for k in ("source_id", "patient", "label", "label_source", "probability")))
    return {str(sid): (str(patient), int(label), float(probability))
            for sid, patient, label, source, probability in columns if source == "observed"}


def imputation_effect(runs: Sequence[Mapping[str, Any]], resamples: int, seed: int) -> list[dict[str, Any]]:
    """What training on imputed labels does to the ranking of the observed ones: for each balancing run both
    ways, pooled out-of-fold ROC AUC of both variants on the same observed-label images and the difference,
    imputed - original, with a paired bootstrap interval (patients resampled under a patient split)."""
    by_key = {(run["variant"], run["arch"]): run for run in runs}
    rows = []
    archs = dict.fromkeys(run["arch"] for run in runs)
    for (original, imputed), arch in itertools.product(imputation_pairs(), archs):
        if (original, arch) not in by_key or (imputed, arch) not in by_key:
            continue
        first = _observed_by_source_id(Path(by_key[original, arch]["artifacts"]["train"]))
        second = _observed_by_source_id(Path(by_key[imputed, arch]["artifacts"]["train"]))
        if first.keys() != second.keys():
            raise PipelineError(f"{original} and {imputed} ({arch}) scored different observed images, e.g. "
                                f"{sorted(first.keys() ^ second.keys())[0]!r}: their runs are not comparable")
        ids = sorted(first)
        labels = np.array([first[sid][1] for sid in ids])
        split = by_key[original, arch]["split"]
        groups = np.array([first[sid][0] if split in evaluate_metrics.PATIENT_GROUPED_SPLITS else sid for sid in ids])
        effect = evaluate_metrics.paired_auc_difference(
            labels, np.array([first[sid][2] for sid in ids]), np.array([second[sid][2] for sid in ids]), groups,
            resamples, seed)
        rows.append({"original": original, "imputed": imputed, "arch": arch, "split": split,
                     "images": len(ids), "deaths": int(labels.sum()), **effect})
    return rows
