"""Cross-validation folds: by image (the study's protocol), by patient (the default) or by site.

`image`: stratified K-fold over images, so a patient's X-rays can sit on both
sides of a fold (what the study did; optimistic). `patient`: stratified group
K-fold with the patient as group, so no patient is in both training and
validation. `site`: leave one site out (Steyerberg and Harrell's
internal-external validation), so each validation fold is a hospital the model
never saw; sites with fewer than `min_site_patients` patients are pooled as one
`other sites` fold (sources/origin.py's rule), and the number of folds is the
number of site groups. Folds depend only on (rows, labels, groups, seed), never on
anything learned, and validation folds are never used to choose anything.

Repeated cross-validation draws the K folds anew R times: repeat 0 with the
run's seed itself, so its folds are the single split's (and its cached folds
and results stay valid), repeat r > 0 with a seed derived from (seed, r).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from common.errors import PipelineError
from sources import origin

DRAWN_SPLITS = ("patient", "image")  # K folds drawn with a seed (`make_folds`); `site_folds` draws nothing


def make_folds(labels, patients, split: str, num_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(train_indices, val_indices)] for each fold, indices into the given rows, sorted."""
    labels = np.asarray(labels)
    if split not in DRAWN_SPLITS:
        raise ValueError(f"split {split!r} not in {DRAWN_SPLITS}")
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


def site_groups(patients, sites, min_site_patients: int) -> np.ndarray:
    """Each row's held-out group: its patient's site (that of the patient's first row, so a patient in two
    sites counts in its first), `other sites` for a site with fewer than `min_site_patients` patients."""
    patient_sites: dict[str, str] = {}
    for patient, site in zip(patients, sites):
        patient_sites.setdefault(patient, site or origin.UNKNOWN_SITE)
    pooled = origin.pooled_sites(patient_sites, patient_sites, min_site_patients)
    return np.array([pooled[patient] for patient in patients], dtype=object)


def site_folds(patients, sites, min_site_patients: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """Leave one site group out: ([(train_indices, val_indices)] in the groups' sorted order, the group of
    each fold). Deterministic: there is nothing to draw."""
    groups = site_groups(patients, sites, min_site_patients)
    names = sorted(set(groups))
    if len(names) < 2:
        raise PipelineError(f"--split=site: the rows make {len(names)} site group(s) ({', '.join(names)}) with "
                            f"--min_site_patients={min_site_patients}; leaving one out needs at least two")
    return [(np.flatnonzero(groups != name), np.flatnonzero(groups == name)) for name in names], names
