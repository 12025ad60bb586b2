"""What is known at admission, as a baseline for the X-ray: age and sex, on the same folds.

The first question a clinician asks of an imaging model is whether it adds anything over age.
`out_of_fold` fits an L2 logistic regression on the training folds' rows and predicts the held-out
fold, fold by fold, using the fold assignment of the image model's out-of-fold predictions, so both
are judged on exactly the same rows and splits.

`combined` is cross-fitted stacking: for held-out fold k, a logistic regression on
[logit(image probability), age, sex] is fitted on the rows of the other folds, each carrying its
own out-of-fold image probability (from the image model that did not train on it), and applied to
fold k's rows with theirs. The image model's probabilities for the training rows of fold k's own
model do not exist (they would be in-sample, too confident), so the combination never sees them.
What is left: the other folds' image models trained on fold k's rows, so fold k's labels reach its
combination weights at second order, through how those models score their own held-out rows, in
two to five coefficients. Removing that needs image models trained inside each training fold
(nested cross-validation, 20 more trainings for 5 folds), which a re-summary of the stored
predictions cannot do.

Only admission facts may be inputs. ICU admission, supplemental oxygen, intubation and extubation
happen after admission and on the way to the outcome (the study's imputation uses them; a
prognostic baseline must not), so asking for them is refused by name.

Missing values (age is blank for many rows of the collection) become the training folds' median
(age) or 0.5 (sex) plus a missing indicator, so a row is never dropped and nothing about the
held-out fold is used to fill it.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from common.ages import parse_age
from common.errors import PipelineError
from components import ingest

ADMISSION_COLUMNS = ("age", "sex")
OUTCOME_ADJACENT = (*ingest.CLINICAL_COLUMNS, "intubated", "in_icu", "survival", "mortality_observed")
_SEX = {"M": 1.0, "F": 0.0}


def admission_features(rows: Sequence[Mapping[str, str]], columns: Sequence[str] = ADMISSION_COLUMNS) -> np.ndarray:
    """(n, len(columns)) floats with NaN where unknown; refuses outcome-adjacent or unknown columns."""
    for column in columns:
        if column in OUTCOME_ADJACENT:
            raise PipelineError(f"clinical baseline: column {column!r} is recorded after admission, on the way "
                                f"to the outcome; only admission facts may be inputs ({', '.join(ADMISSION_COLUMNS)})")
        if column not in ADMISSION_COLUMNS:
            raise PipelineError(f"clinical baseline: no admission feature {column!r} "
                                f"(known: {', '.join(ADMISSION_COLUMNS)})")

    def value(row, column):
        text = (row.get(column) or "").strip()
        if column == "age":
            age = parse_age(text)
            return math.nan if age is None else age
        return _SEX.get(text.upper(), math.nan)

    return np.array([[value(row, c) for c in columns] for row in rows], float).reshape(len(rows), len(columns))


def _fill(train: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training-fold medians (0.5 where a column is all missing) and missing indicators, for both parts."""
    centre = np.array([np.nanmedian(col) if np.isfinite(col).any() else 0.5 for col in train.T])
    out = []
    for part in (train, other):
        missing = ~np.isfinite(part)
        out.append(np.hstack([np.where(missing, centre, part), missing.astype(float)]))
    return out[0], out[1]


def fit_predict(train_x: np.ndarray, train_y: np.ndarray, held_out_x: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Probability of death for the held-out rows from a model fitted on the training rows alone (missing values
    filled from them); the training rows' death rate when they hold one class."""
    train_x, held_out_x = _fill(train_x, held_out_x)
    if len(np.unique(train_y)) < 2:
        return np.full(len(held_out_x), np.mean(train_y))
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(train_x), train_y)
    return model.predict_proba(scaler.transform(held_out_x))[:, 1]


def out_of_fold(features: np.ndarray, labels: Sequence[int], folds: Sequence[int], c: float = 1.0) -> np.ndarray:
    """Probability of death for each row from a model fitted on the other folds' rows only."""
    features, labels, folds = np.asarray(features, float), np.asarray(labels, int), np.asarray(folds)
    probabilities = np.full(len(labels), math.nan)
    for fold in np.unique(folds):
        held_out = folds == fold
        probabilities[held_out] = fit_predict(features[~held_out], labels[~held_out], features[held_out], c)
    return probabilities


def combined(image_probabilities: Sequence[float], features: np.ndarray, labels: Sequence[int],
             folds: Sequence[int], c: float = 1.0) -> np.ndarray:
    """Image out-of-fold log-odds + admission features, cross-fitted fold by fold (see the module's docstring)."""
    p = np.clip(np.asarray(image_probabilities, float), 1e-6, 1 - 1e-6)
    return out_of_fold(np.hstack([np.log(p / (1 - p))[:, None], np.asarray(features, float)]), labels, folds, c)
