import numpy as np
import pytest

from common.errors import PipelineError
from components import configs
from components.train import splits
from sources import origin


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


@pytest.mark.parametrize("split", splits.DRAWN_SPLITS)
def test_repeat_0_is_the_single_split(split):
    labels, patients = _data()
    single = splits.make_folds(labels, patients, split, 5, seed=3)
    first = splits.make_repeated_folds(labels, patients, split, 5, seed=3, repeats=3)[0]
    for (train_a, val_a), (train_b, val_b) in zip(single, first, strict=True):
        np.testing.assert_array_equal(train_a, train_b)
        np.testing.assert_array_equal(val_a, val_b)


def test_every_repeat_keeps_patients_apart_and_validates_every_row_once():
    labels, patients = _data()
    repeated = splits.make_repeated_folds(labels, patients, "patient", 5, seed=0, repeats=4)
    assert len(repeated) == 4
    for folds in repeated:
        assert sorted(np.concatenate([val for _, val in folds])) == list(range(len(labels)))
        for train, val in folds:
            assert not set(patients[train]) & set(patients[val])


def test_repeats_draw_different_folds_from_seeds_derived_from_the_run_seed():
    labels, patients = _data()
    repeated = splits.make_repeated_folds(labels, patients, "patient", 5, seed=0, repeats=3)
    # A row's validation fold, per repeat: two repeats differ when any two rows change company.
    assignments = []
    for folds in repeated:
        fold_of = np.empty(len(labels), int)
        for k, (_, val) in enumerate(folds):
            fold_of[val] = k
        assignments.append(fold_of)
    together = [np.equal.outer(a, a) for a in assignments]
    assert all(not np.array_equal(together[i], together[j]) for i in range(3) for j in range(i + 1, 3))
    seeds = [splits.repeat_seed(0, r) for r in range(3)]
    assert seeds[0] == 0 and len(set(seeds)) == 3
    assert seeds == [splits.repeat_seed(0, r) for r in range(3)]  # derived, not drawn: the same every run
    assert splits.repeat_seed(1, 1) != seeds[1]


def _site_rows():
    """Patients with 1-3 images at sites of 12, 6, 5 (all survived), 2 and 1 patient(s); p-b0 also has an image at
    `tiny` after its first one (at `big`), so it counts at `big`; one patient with a blank site."""
    rows = []  # (patient, site, died)
    for site, size in (("big", 12), ("mid", 6), ("calm", 5), ("small", 2), ("tiny", 1), ("", 1)):
        for i in range(size):
            for _ in range(1 + i % 3):
                rows.append((f"p-{site}{i}", site, int(site != "calm" and i % 2 == 0)))
    rows.append(("p-big0", "tiny", 1))
    patients, sites, labels = map(np.array, zip(*rows))
    return patients, sites, labels


def test_site_folds_leave_one_site_group_out_with_the_small_sites_pooled():
    patients, sites, labels = _site_rows()
    folds, names = splits.site_folds(patients, sites, min_site_patients=5)
    assert names == ["big", "calm", "mid", "other sites", "unknown"]  # one fold per site group
    groups = splits.site_groups(patients, sites, 5)
    validated = np.concatenate([val for _, val in folds])
    assert sorted(validated) == list(range(len(patients)))  # every row validated exactly once
    for (train, val), name in zip(folds, names):
        assert set(groups[val]) == {name}
        assert not set(patients[train]) & set(patients[val])  # no patient on both sides
    other = folds[names.index("other sites")][1]
    assert set(patients[other]) == {"p-small0", "p-small1", "p-tiny0"}  # p-big0's image at `tiny` stays at big
    # `calm` (survivors only) still validates: it gets a fold, and evaluate no per-site metric row
    assert set(labels[folds[names.index("calm")][1]]) == {0}


def test_site_folds_need_two_site_groups():
    patients, sites, _ = _site_rows()
    known = sites != ""  # `unknown` is never pooled: with it, every known site pooled would still make two
    with pytest.raises(PipelineError, match="--split=site.*at least two"):
        splits.site_folds(patients[known], sites[known], min_site_patients=50)


def test_the_site_flag_default_is_the_site_rule_of_the_shortcut_audit():
    assert configs.TrainConfig().min_site_patients == origin.MIN_SITE_PATIENTS


def test_the_site_split_has_nothing_to_repeat():
    with pytest.raises(ValueError, match="--split=site .* --repeats must be 1"):
        configs.TrainConfig(split="site", repeats=2)
