"""The linear probe (components/train/linear_probe.py): C chosen inside the training fold, saved as a classifier."""

import dataclasses
import json

import keras
import numpy as np
import pytest

import models
from components import configs
from components.train import fold as fold_lib, input_pipeline, linear_probe, probe_fold, splits
from pipeline import local_runner
from pipeline.pipeline import create_pipeline

IMAGE_SIZE = 32


def _rows(n_patients=30, per_patient=2, seed=0):
    """Features where column 0 separates the classes, plus noise; two rows per patient."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.permutation(np.arange(n_patients) % 3 == 0).astype(int), per_patient)
    x = rng.normal(size=(len(y), 6))
    x[:, 0] += 4.0 * y
    return x, y, np.repeat(np.arange(n_patients).astype(str), per_patient)


def test_when_every_c_ranks_perfectly_the_strongest_regularisation_wins():
    x, y, patients = _rows()
    x[:, 0] = y * 10.0  # a perfect separator: every C gives inner AUC 1
    c, inner = linear_probe.choose_c(x, y, patients, "balanced", seed=0)
    assert set(inner.values()) == {1.0}
    assert c == linear_probe.C_GRID[0]


def test_with_one_patient_of_a_class_c_falls_back_to_the_default():
    x, y, patients = _rows()
    y = np.where(patients == patients[np.argmax(y)], 1, 0)  # one dying patient
    assert linear_probe.choose_c(x, y, patients, None, seed=0) == (linear_probe.FALLBACK_C, {})


def test_every_c_is_scored_and_the_best_inner_auc_is_chosen():
    x, y, patients = _rows(seed=1)
    c, inner = linear_probe.choose_c(x, y, patients, None, seed=0)
    assert sorted(inner) == sorted(linear_probe.C_GRID) and c in linear_probe.C_GRID
    assert inner[c] == max(inner.values()) and inner[c] > 0.9


@pytest.fixture(scope="module")
def sample(sample_tfrecords):
    examples = input_pipeline.load_examples(sample_tfrecords, "observed", IMAGE_SIZE)
    train_idx, val_idx = splits.make_folds(examples.labels, examples.patients, "patient", 2, seed=0)[0]
    keras.utils.set_random_seed(0)
    classifier, _ = models.build_classifier("resnet18", IMAGE_SIZE)
    return examples.subset(train_idx), examples.subset(val_idx), classifier


def _params(**changes):
    return fold_lib.TrainParams(image_size=IMAGE_SIZE, **changes)


def test_poisoning_the_outer_validation_fold_leaves_c_and_the_probe_unchanged(sample, tmp_path):
    train, val, classifier = sample
    extractor = linear_probe.feature_model(classifier)
    clean = probe_fold.run_fold(classifier, extractor, 0, train, val, _params(), tmp_path / "clean", "none")
    poisoned_val = dataclasses.replace(val, labels=1 - val.labels,
                                       images=np.random.default_rng(0).uniform(0, 255, val.images.shape)
                                       .astype(np.float32))
    poisoned = probe_fold.run_fold(classifier, extractor, 0, train, poisoned_val, _params(), tmp_path / "poisoned",
                                     "none")
    assert poisoned["c"] == clean["c"] and poisoned["inner_auc"] == clean["inner_auc"]
    fold_model = lambda run: keras.models.load_model(tmp_path / run / "result" / "model.keras")  # noqa: E731
    for a, b in zip(fold_model("clean").get_layer("logit").get_weights(),
                    fold_model("poisoned").get_layer("logit").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert poisoned["final"]["val_auc"] != clean["final"]["val_auc"]  # the poison did reach the validation


def test_the_saved_classifier_computes_the_fitted_logistic_regression(sample, tmp_path):
    train, val, classifier = sample
    extractor = linear_probe.feature_model(classifier)
    x = linear_probe.features(extractor, train.images, 16)
    assert x.shape == (len(train), 64 + 128 + 256)
    probe = linear_probe.fit(x, train.labels, train.patients, "class_weights", seed=0)
    model = linear_probe.probe_classifier(classifier, probe)
    model.save(tmp_path / "probe.keras")
    loaded = keras.models.load_model(tmp_path / "probe.keras")
    x_val = linear_probe.features(extractor, val.images, 16)
    expected = ((x_val - probe.mean) / probe.scale) @ probe.coef + probe.intercept
    np.testing.assert_allclose(np.asarray(loaded(val.images))[:, 0], expected, rtol=1e-4, atol=1e-4)


def test_a_backbone_without_torchvision_stage_names_is_refused():
    classifier, _ = models.build_classifier("alexnet", 64)
    with pytest.raises(ValueError, match="linear probe: the backbone has no layers"):
        linear_probe.feature_model(classifier)


def test_the_train_stage_runs_probes_that_evaluation_reads(tmp_path):
    config = configs.PipelineConfig(
        output_dir=tmp_path, train=configs.TrainConfig(method="linear_probe", image_size=IMAGE_SIZE, folds=2),
        evaluate=configs.EvaluateConfig(bootstrap_resamples=20, gradcam_images=1))
    artifacts = local_runner.run_pipeline(create_pipeline(config), "evaluate", log=lambda _: None)
    summary = json.loads((artifacts["train"].path / "train_summary.json").read_text())
    assert [f["method"] for f in summary["folds"]] == ["linear_probe"] * 2
    assert all(f["c"] in linear_probe.C_GRID for f in summary["folds"])
    assert (artifacts["evaluate"].path / "evaluation.json").is_file()
    again = local_runner.run_pipeline(create_pipeline(config), "train", log=lambda _: None)
    assert again["train"].path == artifacts["train"].path  # cached


def test_lp_ft_starts_from_the_folds_probe_and_then_fine_tunes_the_body(sample, tmp_path):
    import tensorflow as tf

    from components.train import strategy as strat

    train, val, _ = sample
    p = _params(method="lp_ft", epochs_unfrozen=1, lr_finder_steps=3, batch_size=8, precision="fp32")
    session = fold_lib.Session(p, tf.distribute.get_strategy(), strat.resolve_precision("fp32"))
    assert session.model.name == "linear_probe"
    logs = []
    result = fold_lib.run_fold(session, 0, train, val, tmp_path / "fold", log=logs.append)
    assert result["probe"]["c"] in linear_probe.C_GRID + (linear_probe.FALLBACK_C,)
    assert any("LP-FT head from the linear probe" in line for line in logs)
    assert list(result["lr"]) == ["unfrozen"]  # no frozen phase
    history = json.loads((tmp_path / "fold" / "result" / "history.json").read_text())
    assert [(row["phase"], row["global_epoch"]) for row in history] == [("unfrozen", 0)]

    # Before any training step, the network is the probe: the head fit on the training rows' features.
    session.reset(0)
    run = fold_lib._FoldRun(session, 0, train, val, tmp_path / "again", lambda row: None, lambda line: None)
    run.init_head_from_probe()
    features = linear_probe.features(session.features, train.images, 16)
    probe = linear_probe.fit(features, train.labels, train.patients, p.rebalance, p.seed)
    expected = ((features - probe.mean) / probe.scale) @ probe.coef + probe.intercept
    np.testing.assert_allclose(np.asarray(session.model(train.images))[:, 0], expected, rtol=1e-3, atol=1e-3)
    trained = keras.models.load_model(tmp_path / "fold" / "result" / "model.keras")
    head = session.model.get_layer("logit").get_weights()[0]
    assert not np.allclose(trained.get_layer("logit").get_weights()[0], head)  # the head fine-tuned too

    # Batch norm stays as the probe saw it (inference mode, ImageNet's statistics and affine): a training
    # step in training mode must give the probe's own logits, and fine-tuning changes the convolutions only.
    np.testing.assert_allclose(np.asarray(session.model(train.images, training=True))[:, 0], expected,
                               rtol=1e-3, atol=1e-3)
    norms = [layer for layer in session.model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and not any(layer.trainable for layer in norms)
    after = {layer.name: layer for layer in trained._flatten_layers(include_self=False)}
    for layer in norms:
        for before, now in zip(layer.get_weights(), after[layer.name].get_weights()):
            np.testing.assert_array_equal(before, now)
    convolutions = [layer for layer in session.model._flatten_layers(include_self=False)
                    if isinstance(layer, keras.layers.Conv2D)]
    assert any(not np.array_equal(layer.get_weights()[0], after[layer.name].get_weights()[0])
               for layer in convolutions)
