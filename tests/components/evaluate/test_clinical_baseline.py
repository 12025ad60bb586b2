import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from common.errors import PipelineError
from components.evaluate import clinical_baseline as cb


def test_outcome_adjacent_columns_are_refused_by_name():
    for column in ("went_icu", "needed_supplemental_O2", "intubation_present", "extubated", "survival"):
        with pytest.raises(PipelineError, match=column):
            cb.admission_features([{column: "Y"}], columns=("age", column))
    with pytest.raises(PipelineError, match="temperature"):
        cb.admission_features([{}], columns=("temperature",))


def test_features_parse_age_and_sex_and_mark_unknowns():
    rows = [{"age": "72", "sex": "F"}, {"age": ">80", "sex": "M"}, {"age": "", "sex": ""}, {"age": "60s", "sex": "x"}]
    features = cb.admission_features(rows)
    np.testing.assert_array_equal(features[:2], [[72, 0], [81, 1]])
    assert np.isnan(features[2]).all() and features[3, 0] == 65 and np.isnan(features[3, 1])


def _cohort(n=600, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 95, n)
    sex = rng.integers(0, 2, n).astype(float)
    died = rng.random(n) < 1 / (1 + np.exp(-(age - 70) / 6))
    age[rng.random(n) < 0.3] = np.nan  # blank ages, as in the collection
    return np.column_stack([age, sex]), died.astype(int), np.arange(n) % 5


def test_age_predicts_when_it_carries_the_risk():
    features, labels, folds = _cohort()
    probabilities = cb.out_of_fold(features, labels, folds)
    assert np.isfinite(probabilities).all() and roc_auc_score(labels, probabilities) > 0.75


def test_a_held_out_fold_does_not_move_its_own_predictions():
    """Each fold's predictions come from the other folds: poisoning fold 0's labels leaves them unchanged."""
    features, labels, folds = _cohort()
    clean = cb.out_of_fold(features, labels, folds)
    poisoned_labels = labels.copy()
    poisoned_labels[folds == 0] = 1 - poisoned_labels[folds == 0]
    poisoned = cb.out_of_fold(features, poisoned_labels, folds)
    np.testing.assert_allclose(poisoned[folds == 0], clean[folds == 0])
    assert not np.allclose(poisoned[folds != 0], clean[folds != 0])


def test_combined_uses_the_image_signal_too():
    features, labels, folds = _cohort(seed=1)
    rng = np.random.default_rng(2)
    image = np.clip(labels * 0.6 + rng.uniform(0, 0.4, len(labels)), 0.01, 0.99)  # informative image score
    assert roc_auc_score(labels, cb.combined(image, features, labels, folds)) > roc_auc_score(
        labels, cb.out_of_fold(features, labels, folds))
