"""The study's imputation forest: its features, their encoding and the fit, in one place.

Two stages fit it: impute (once, on every observed label: its report's CV and `labels.csv`, the study's
way) and train (inside each training fold, on that fold's observed labels only, so no validation
patient's outcome reaches a training label). Both must encode and fit exactly alike, and the train stage
must not import the impute stage's helpers (a stage imports another only for its artifact format), so the
forest sits on the ground floor, beside the age parser it needs; the TFRecords carry the encoded
features (tfrecords/schema.py) from impute's side to train's. scikit-learn is imported inside the fit
only, so what needs just the encoding (the TFRecord schema) does not load it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from common.ages import parse_age
from common.clinical_flags import FLAG_COLUMNS

FEATURE_NAMES = (*FLAG_COLUMNS, "age_bin")

# The study's bins: 0-30, 31-40, 41-50, 51-60, 61-70, 71-80, 81-100.
AGE_BIN_UPPER_EDGES = (30, 40, 50, 60, 70, 80)
NOT_RECORDED = -1  # a feature's explicit 'not recorded' code, which a tree can split on
_FLAG_VALUES = {"Y": 1, "N": 0}


def flag_value(value: str) -> int:
    """Y -> 1, N -> 0; blank, `?` and free text ('Would have been stated', 'Not visible') -> -1."""
    return _FLAG_VALUES.get(value.strip().upper(), NOT_RECORDED)


def age_bin(value: str) -> int:
    """Index of the study's age bin (0..6), or -1 when the age is unknown; above 100 -> last bin."""
    age = parse_age(value)
    if age is None:
        return NOT_RECORDED
    return int(np.searchsorted(AGE_BIN_UPPER_EDGES, age, side="left"))


def encode(row: Mapping[str, str]) -> dict[str, int]:
    """One row's features by name; a column the data lacks (a manifest without the flags) is -1."""
    return {**{column: flag_value(row.get(column, "")) for column in FLAG_COLUMNS},
            "age_bin": age_bin(row.get("age", ""))}


def features(rows: Sequence[Mapping[str, str]]) -> np.ndarray:
    """(rows, FEATURE_NAMES) int64; unknowns are their own value (-1), so a forest can split on 'not recorded'."""
    return np.array([[encode(row)[name] for name in FEATURE_NAMES] for row in rows], dtype=np.int64).reshape(
        len(rows), len(FEATURE_NAMES))


def make_forest(seed: int, n_estimators: int):
    """The study's RandomForestClassifier (scikit-learn defaults otherwise)."""
    from sklearn import ensemble

    return ensemble.RandomForestClassifier(n_estimators=n_estimators, random_state=seed)


def death_probability(forest, x: np.ndarray) -> np.ndarray:
    """P(died) of each row of `x` under a fitted forest."""
    return forest.predict_proba(x)[:, list(forest.classes_).index(1)]


def imputed_labels(probability: np.ndarray) -> np.ndarray:
    """Died (1) at a probability of at least 0.5, as the forest's `predict` decides."""
    return (np.asarray(probability) >= 0.5).astype(np.int64)
