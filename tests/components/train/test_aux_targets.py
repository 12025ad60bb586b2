"""--aux_targets (components/train/aux_targets.py): outcomes short of death as extra heads, never as inputs.

Asserted on the embedded sample's TFRecords and on generated rows: which rows join training, that folds and
validation are those without the heads (no validation patient's image trains, labelled or not), the masked
loss, and that a fold trained with heads saves and serves the death head alone."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from common.errors import PipelineError
from components.train import (aux_targets, component, fold, in_fold_imputation, input_pipeline, loop, rebalance,
                              strategy as strat)

TARGETS = ("went_icu", "intubation_present", "needed_supplemental_O2")
IMAGE_SIZE = 32


def test_names_are_the_clinical_flags_each_once():
    assert aux_targets.parse("") == ()
    assert aux_targets.parse(" went_icu, intubation_present ") == ("went_icu", "intubation_present")
    with pytest.raises(PipelineError, match="age not among the clinical flags"):
        aux_targets.parse("went_icu,age")
    with pytest.raises(PipelineError, match="twice"):
        aux_targets.parse("went_icu,went_icu")


@pytest.fixture(scope="module")
def sample(sample_tfrecords):
    return (input_pipeline.load_examples(sample_tfrecords, "observed", IMAGE_SIZE),
            input_pipeline.load_examples(sample_tfrecords, "observed", IMAGE_SIZE, aux_targets=TARGETS))


def test_images_with_a_target_but_no_survival_label_join_with_their_survival_unknown(sample):
    plain, with_aux = sample
    extra = with_aux.label_sources != "observed"
    assert extra.any() and (~extra).sum() == len(plain)
    assert (with_aux.labels[extra] == -1).all()  # never the impute stage's label: that one saw every outcome
    assert ((with_aux.aux[extra] >= 0).any(axis=1)).all()
    np.testing.assert_array_equal(with_aux.labels[~extra], plain.labels)
    assert with_aux.aux.shape == (len(with_aux), len(TARGETS)) and set(np.unique(with_aux.aux)) <= {-1, 0, 1}


@pytest.mark.parametrize("repeats", [1, 2])
def test_folds_validate_the_same_observed_images_and_no_validation_patient_trains(sample, repeats):
    plain, with_aux = sample
    a = in_fold_imputation.make_repeated_folds(plain, "patient", 3, 0, repeats, 5)
    b = in_fold_imputation.make_repeated_folds(with_aux, "patient", 3, 0, repeats, 5)
    aux_only = np.flatnonzero(with_aux.labels < 0)
    for folds_a, folds_b in zip(a, b):
        for (_, val_a), (train_b, val_b) in zip(folds_a, folds_b):
            assert sorted(plain.source_ids[val_a]) == sorted(with_aux.source_ids[val_b])
            assert not set(with_aux.patients[train_b]) & set(with_aux.patients[val_b])
            joined = set(aux_only) - set(train_b)  # aux-only rows left out: only those of a validation patient
            assert set(with_aux.patients[list(joined)]) <= set(with_aux.patients[val_b])
            assert (with_aux.labels[train_b] < 0).any()


def test_an_unknown_label_weighs_nothing_and_the_classes_are_counted_over_the_known():
    weights = rebalance.example_weights([1, 0, 0, 0, -1, -1], "class_weights")
    np.testing.assert_allclose(weights, [2.0, 2 / 3, 2 / 3, 2 / 3, 0, 0])
    np.testing.assert_array_equal(rebalance.example_weights([1, -1], "none"), [1, 0])
    counter = rebalance.FedCounter()
    counter.add([1, -1, 0, -1])
    assert counter.counts.tolist() == [1, 1]


def test_the_masked_loss_is_each_targets_mean_where_known_averaged_over_targets():
    targets = np.array([[1, -1], [0, 1], [-1, -1]], np.float32)
    logits = np.array([[2.0, 5.0], [-1.0, 0.5], [9.0, -9.0]], np.float32)
    bce = lambda y, z: np.log1p(np.exp(-z)) if y else np.log1p(np.exp(z))  # noqa: E731
    expected = np.mean([(bce(1, 2.0) + bce(0, -1.0)) / 2, bce(1, 0.5) / 1])
    known = tf.reduce_sum(tf.cast(targets >= 0, tf.float32), axis=0)
    assert float(aux_targets.masked_mean_bce(targets, logits, known)) == pytest.approx(expected, rel=1e-6)


def test_a_target_unknown_in_the_whole_batch_does_not_dilute_the_others():
    targets = np.array([[1, -1], [0, -1]], np.float32)
    logits = np.array([[2.0, 3.0], [-1.0, 3.0]], np.float32)
    known = tf.reduce_sum(tf.cast(targets >= 0, tf.float32), axis=0)
    first_alone = aux_targets.masked_mean_bce(targets[:, :1], logits[:, :1], known[:1])
    assert float(aux_targets.masked_mean_bce(targets, logits, known)) == pytest.approx(float(first_alone))
    nothing = np.full((2, 2), -1, np.float32)
    assert float(aux_targets.masked_mean_bce(nothing, logits, tf.zeros(2))) == 0.0


def test_a_target_known_nowhere_or_of_one_value_is_refused():
    aux_targets.check_known(("went_icu",), np.array([[1], [0], [-1]]))
    with pytest.raises(PipelineError, match="extubated is known on no image"):
        aux_targets.check_known(("went_icu", "extubated"), np.array([[1, -1], [0, -1]]))
    with pytest.raises(PipelineError, match="went_icu is the same on every image"):
        aux_targets.check_known(("went_icu",), np.array([[1], [1], [-1]]))


def _params(**kwargs):
    return fold.TrainParams(arch="resnet18_stage3", image_size=IMAGE_SIZE, batch_size=8, lr_finder_steps=3,
                            precision="fp32", epochs_frozen=1, epochs_unfrozen=1, aux_targets=",".join(TARGETS),
                            **kwargs)


@pytest.mark.parametrize("method", ["fine_tune", "lp_ft"])
def test_a_fold_trains_its_heads_and_saves_and_validates_the_death_head_alone(sample, tmp_path, method):
    _, with_aux = sample
    ((train_idx, val_idx), *_), = in_fold_imputation.make_repeated_folds(with_aux, "patient", 3, 0, 1, 5)
    train, val = with_aux.subset(train_idx), with_aux.subset(val_idx)
    session = fold.Session(_params(method=method), strat.get_strategy("default"), "fp32")
    assert [tuple(o.shape) for o in session.trained.outputs] == [(None, 1), (None, len(TARGETS))]
    heads = session.trained.get_layer(aux_targets.HEAD_NAME)
    start = loop.snapshot(heads.weights)
    result = fold.run_fold(session, 0, train, val, tmp_path, log=lambda line: None)
    assert any(np.abs(w).sum() > 0 for w in loop.snapshot(heads.weights)) and not np.abs(start[0]).any()
    assert result["num_val"] == len(val) and (val.labels >= 0).all()
    assert 0 < result["fed_counts"][0] + result["fed_counts"][1] < result["train_images"]  # aux-only rows fed too
    saved = tf.keras.models.load_model(next((tmp_path / "result").rglob("*.keras")), compile=False)
    assert [tuple(o.shape) for o in saved.outputs] == [(None, 1)]
    assert aux_targets.HEAD_NAME not in [layer.name for layer in saved.layers]


def test_the_fold_key_follows_the_targets_and_their_values(sample):
    _, with_aux = sample
    ((train_idx, val_idx), *_), = in_fold_imputation.make_repeated_folds(with_aux, "patient", 3, 0, 1, 5)
    train, val = with_aux.subset(train_idx), with_aux.subset(val_idx)
    key = component.fold_key(_params(), "fp32", train, val, 0)
    flipped = dataclasses.replace(train, aux=np.where(train.aux >= 0, 1 - train.aux, -1))
    assert component.fold_key(_params(), "fp32", flipped, val, 0) != key
    assert component.fold_key(dataclasses.replace(_params(), aux_targets="went_icu"), "fp32", train, val, 0) != key


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "linear_probe"}, "the probe fits death alone"),
    ({"rebalance": "resample", "variant": "original_resample"}, "rejection resampling needs a survival label"),
])
def test_what_heads_cannot_be_combined_with_is_named(sample_tfrecords, tmp_path, kwargs, message):
    p = _params(**kwargs)
    with pytest.raises(PipelineError, match=message):
        component._plan(p, "fp32", sample_tfrecords, tmp_path)
