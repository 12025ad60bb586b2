"""Cross-validation folds: by image (the study's protocol) or by patient (the default).

`image`: stratified K-fold over images, so a patient's X-rays can sit on both
sides of a fold (what the study did; optimistic). `patient`: stratified group
K-fold with the patient as group, so no patient is in both training and
validation. Folds depend only on (rows, labels, groups, seed), never on
anything learned, and validation folds are never used to choose anything.

Repeated cross-validation draws the K folds anew R times: repeat 0 with the
run's seed itself, so its folds are the single split's (and its cached folds
and results stay valid), repeat r > 0 with a seed derived from (seed, r).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

SPLITS = ("patient", "image")


def make_folds(labels, patients, split: str, num_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(train_indices, val_indices)] for each fold, indices into the given rows, sorted."""
    labels = np.asarray(labels)
    if split not in SPLITS:
        raise ValueError(f"split {split!r} not in {SPLITS}")
    placeholder = np.zeros(len(labels))
    if split == "image":
        splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        folds = splitter.split(placeholder, labels)
    else:
        splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        folds = splitter.split(placeholder, labels, groups=np.asarray(patients))
    return [(np.sort(train), np.sort(val)) for train, val in folds]


def repeat_seed(seed: int, repeat: int) -> int:
    """The split seed of `repeat`: the run's seed for repeat 0, a SeedSequence child of (seed, repeat) after it."""
    if repeat == 0:
        return seed
    return int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0])


def make_repeated_folds(labels, patients, split: str, num_folds: int, seed: int,
                        repeats: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """`make_folds` for each of `repeats` repeats, with `repeat_seed(seed, r)`: [repeat][fold] -> (train, val)."""
    return [make_folds(labels, patients, split, num_folds, repeat_seed(seed, r)) for r in range(repeats)]
