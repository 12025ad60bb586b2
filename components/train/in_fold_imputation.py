"""Imputed labels fitted inside each training fold, so no validation patient's outcome labels a training row.

The impute stage fits its forest once on every observed label (the study's way, kept for its report and
`labels.csv`); a fold that trained on those labels would carry its validation patients' outcomes. Here
the same forest (`common/imputation_forest.py`, on the features the TFRecords carry) is fitted on the
fold's observed training labels only and labels the fold's unlabelled rows.

Folds are drawn on the observed rows alone (`splits`), so they never depend on an imputed label and
imputing inside a fold cannot move an image between folds. Rows without an observed label are never
validated: they train in every fold, except, under `--split=patient`, in a fold whose validation holds
another image of their patient and, under `--split=site`, in the fold that holds out their site.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from common import imputation_forest
from common.errors import PipelineError
from components.train import input_pipeline, splits


def make_repeated_folds(examples: input_pipeline.Examples, split: str, num_folds: int, seed: int,
                        repeats: int, min_site_patients: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """[repeat][fold] -> (train, val) indices into `examples`: folds of the observed rows, the others added
    to every training side (not beside their own patient's validation images under the patient and site
    splits, nor beside their own site's under the site split)."""
    observed = np.flatnonzero(examples.label_sources == "observed")
    unlabelled = np.flatnonzero(examples.label_sources != "observed")
    if split == "site":
        repeated = [site_folds(examples, min_site_patients)[0]]
    else:
        repeated = splits.make_repeated_folds(examples.labels[observed], examples.patients[observed], split,
                                              num_folds, seed, repeats)
    out = []
    for folds in repeated:
        out.append([])
        for train, val in folds:
            extra = unlabelled
            if split in ("patient", "site"):
                extra = extra[~np.isin(examples.patients[extra], examples.patients[observed[val]])]
            if split == "site":
                extra = extra[~np.isin(examples.sites[extra], examples.sites[observed[val]])]
            out[-1].append((np.sort(np.concatenate([observed[train], extra])), observed[val]))
    return out


def site_folds(examples: input_pipeline.Examples,
               min_site_patients: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """`splits.site_folds` of the observed rows (indices among them) and the site group each fold holds out."""
    observed = examples.label_sources == "observed"
    return splits.site_folds(examples.patients[observed], examples.sites[observed], min_site_patients)


def impute_training_labels(train: input_pipeline.Examples, seed: int,
                           n_estimators: int) -> input_pipeline.Examples:
    """`train` with its unlabelled rows labelled by the forest fitted on its own observed rows."""
    observed = train.label_sources == "observed"
    if observed.all():
        return train
    known = train.labels[observed]
    if len(np.unique(known)) < 2:
        raise PipelineError(f"train: a training fold holds observed labels of one class only ({len(known)} rows); "
                            f"the imputation forest needs both")
    forest = imputation_forest.make_forest(seed, n_estimators)
    forest.fit(train.clinical[observed], known)
    labels = train.labels.copy()
    labels[~observed] = imputation_forest.imputed_labels(
        imputation_forest.death_probability(forest, train.clinical[~observed]))
    return dataclasses.replace(train, labels=labels)
