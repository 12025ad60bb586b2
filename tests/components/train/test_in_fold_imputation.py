import dataclasses

import numpy as np
import pytest

from common.errors import PipelineError
from components import impute
from components.train import in_fold_imputation, input_pipeline

TREES = 30


def _examples(n_patients=60, unlabelled_every=3, seed=0, noise=0.0) -> input_pipeline.Examples:
    """Two images per patient; deaths go with ICU + intubation + old age (an outcome flipped at rate `noise`);
    every third patient unlabelled; patients at four sites in turn."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(n_patients):
        died = int(rng.random() < 0.35)
        flags = [int(rng.random() < (0.85 if died else 0.15)), int(rng.random() < 0.5),
                 int(rng.random() < (0.8 if died else 0.1)), -1, int(rng.integers(5, 7) if died else rng.integers(0, 4))]
        source = "imputed" if patient % unlabelled_every == 0 else "observed"
        died = died ^ int(rng.random() < noise)
        rows += [(f"p{patient}", died, source, flags)] * 2
    n = len(rows)
    ids = np.array([f"img{i}" for i in range(n)])
    return input_pipeline.Examples(images=np.zeros((n, 1, 1, 3), np.float32),
                                   labels=np.array([died for _, died, _, _ in rows]),
                                   label_sources=np.array([source for _, _, source, _ in rows]),
                                   source_ids=ids, patients=np.array([p for p, _, _, _ in rows]), sha256=ids,
                                   clinical=np.array([flags for *_, flags in rows]),
                                   sites=np.array([f"site{int(p[1:]) % 4}" for p, *_ in rows]),
                                   aux=np.zeros((n, 0), np.int64))


def _folds(examples, split="patient", repeats=1):
    return in_fold_imputation.make_repeated_folds(examples, split, 5, seed=0, repeats=repeats, min_site_patients=5)


@pytest.mark.parametrize("split", ["patient", "image"])
def test_folds_are_drawn_on_observed_labels_so_imputation_cannot_move_an_image_between_folds(split):
    examples = _examples()
    unlabelled = examples.label_sources != "observed"
    relabelled = dataclasses.replace(examples, labels=np.where(unlabelled, 1 - examples.labels, examples.labels),
                                     clinical=np.where(unlabelled[:, None], 0, examples.clinical))
    folds, again = _folds(examples, split, repeats=2), _folds(relabelled, split, repeats=2)
    for repeat, repeat_again in zip(folds, again):
        for (train, val), (train_again, val_again) in zip(repeat, repeat_again):
            np.testing.assert_array_equal(train, train_again)
            np.testing.assert_array_equal(val, val_again)
            assert (examples.label_sources[val] == "observed").all()
            assert set(np.flatnonzero(unlabelled)) <= set(train)  # no patient of theirs is validated
            assert not set(train) & set(val)


def test_an_unlabelled_image_does_not_train_beside_its_patients_validation_image():
    examples = _examples()
    sources = examples.label_sources.copy()
    sources[1] = "imputed"  # patient p0's second image: p0 keeps an observed label on its first
    examples = dataclasses.replace(examples, label_sources=sources)
    for train, val in _folds(examples)[0]:
        if 0 in val:
            assert 1 not in train
        else:
            assert 1 in train


def test_poisoned_validation_labels_leave_the_folds_training_labels_unchanged():
    examples = _examples()
    for train, val in _folds(examples)[0]:
        poisoned = dataclasses.replace(examples, labels=examples.labels.copy())
        poisoned.labels[val] = 1 - poisoned.labels[val]
        clean = in_fold_imputation.impute_training_labels(examples.subset(train), 0, TREES)
        dirty = in_fold_imputation.impute_training_labels(poisoned.subset(train), 0, TREES)
        np.testing.assert_array_equal(clean.labels, dirty.labels)
        imputed = clean.label_sources == "imputed"
        assert imputed.any() and (clean.labels[~imputed] == examples.labels[train][~imputed]).all()


def test_the_study_way_lets_the_poisoned_validation_labels_reach_the_imputed_ones():
    """The leak closed above: one forest on every observed label gives the unlabelled rows probabilities
    that move with the validation fold's labels."""
    examples = _examples()
    _, val = _folds(examples)[0][0]

    def rows(labels):
        return [{"source_id": sid, "patientid": patient, "age": "", "mortality_observed": str(label if src == "observed" else -1),
                 **dict(zip(("went_icu", "needed_supplemental_O2", "intubation_present", "extubated"),
                            ({1: "Y", 0: "N", -1: ""}[v] for v in clinical[:4])))}
                for sid, patient, label, src, clinical in zip(examples.source_ids, examples.patients, labels,
                                                             examples.label_sources, examples.clinical)]
    poisoned = examples.labels.copy()
    poisoned[val] = 1 - poisoned[val]
    study = [row["imputed_probability"] for row in impute.impute(rows(examples.labels), 0, TREES, 5)["labels"]]
    study_poisoned = [row["imputed_probability"] for row in impute.impute(rows(poisoned), 0, TREES, 5)["labels"]]
    unlabelled = np.flatnonzero(examples.label_sources != "observed")
    assert np.array(study)[unlabelled].tolist() != np.array(study_poisoned)[unlabelled].tolist()


def test_imputed_labels_differ_between_folds_that_see_different_patients():
    examples = _examples(noise=0.3)
    unlabelled = np.flatnonzero(examples.label_sources != "observed")
    by_fold = []
    for train, _ in _folds(examples)[0]:
        labelled = in_fold_imputation.impute_training_labels(examples.subset(train), 0, TREES)
        by_fold.append(dict(zip(train, labelled.labels)))
    per_fold = [[fold[i] for i in unlabelled] for fold in by_fold]
    assert len({tuple(labels) for labels in per_fold}) > 1


def test_observed_only_rows_are_left_as_they_are():
    examples = _examples()
    observed = examples.subset(np.flatnonzero(examples.label_sources == "observed"))
    assert in_fold_imputation.impute_training_labels(observed, 0, TREES) is observed


def test_a_fold_with_one_observed_class_is_a_clear_error():
    examples = _examples()
    one_class = dataclasses.replace(examples, labels=np.zeros_like(examples.labels))
    with pytest.raises(PipelineError, match="one class only"):
        in_fold_imputation.impute_training_labels(one_class, 0, TREES)


def test_under_the_site_split_an_unlabelled_image_never_trains_beside_its_sites_validation():
    examples = _examples()
    (folds,) = _folds(examples, "site")
    assert len(folds) == 4  # one per site, whatever --folds says
    for train, val in folds:
        assert set(examples.sites[val]) == set(examples.sites[val[:1]])
        assert not set(examples.sites[train]) & set(examples.sites[val])
        assert (examples.label_sources[val] == "observed").all()
