import numpy as np
import pytest

from components.train import splits


def _data(seed=0):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(40), rng.integers(1, 5, size=40))
    labels = (rng.random(len(patients)) < 0.25).astype(int)
    return labels, patients.astype(str)


def test_patient_split_keeps_each_patient_on_one_side():
    labels, patients = _data()
    folds = splits.make_folds(labels, patients, "patient", 5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen) == list(range(len(labels)))  # every row validated exactly once
    for train, val in folds:
        assert not set(patients[train]) & set(patients[val])


def test_image_split_is_stratified_and_may_share_patients():
    labels, patients = _data()
    folds = splits.make_folds(labels, patients, "image", 5, seed=0)
    rate = labels.mean()
    for _, val in folds:
        assert abs(labels[val].mean() - rate) < 0.1
    assert any(set(patients[t]) & set(patients[v]) for t, v in folds)


def test_folds_depend_only_on_seed():
    labels, patients = _data()
    a = splits.make_folds(labels, patients, "patient", 5, seed=3)
    b = splits.make_folds(labels, patients, "patient", 5, seed=3)
    c = splits.make_folds(labels, patients, "patient", 5, seed=4)
    assert all((x[1] == y[1]).all() for x, y in zip(a, b))
    assert any(len(x[1]) != len(y[1]) or (x[1] != y[1]).any() for x, y in zip(a, c))


def test_unknown_split_is_refused():
    with pytest.raises(ValueError):
        splits.make_folds([0, 1], ["a", "b"], "random", 2, 0)
