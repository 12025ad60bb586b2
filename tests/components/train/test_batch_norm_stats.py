"""Recomputed batch-norm statistics: exact running means of the batch statistics, frozen layers untouched."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.train import batch_norm_stats
from models.fused_batch_norm import FusedBatchNormalization


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = FusedBatchNormalization(momentum=0.9, name="body_bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="head_bn")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    for layer in batch_norm_stats.trainable_batch_norm_layers(model):  # stale statistics, as after short training
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 5.0, np.float32))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 7.0, np.float32))
    return model


def _expected(model, batches):
    """Batch-size-weighted means of each layer's training-mode batch moments (unbiased for the fused layer,
    biased for Keras' own, as each layer updates its moving variance)."""
    taps = keras.Model(model.inputs, model.get_layer("body_bn").input)
    body_bn = model.get_layer("body_bn")
    sums = {"body_bn": [0, 0], "head_bn": [0, 0]}
    for batch in batches:
        conv = taps(tf.constant(batch)).numpy().reshape(-1, 4)
        # head_bn's input in training mode: pooled batch-normalised conv output (batch statistics).
        normalised = (conv - conv.mean(0)) / np.sqrt(conv.var(0) + body_bn.epsilon)
        pooled = normalised.reshape(len(batch), -1, 4).mean(1) * body_bn.gamma.numpy() + body_bn.beta.numpy()
        for name, values, ddof in (("body_bn", conv, 1), ("head_bn", pooled, 0)):
            sums[name][0] = sums[name][0] + len(batch) * values.mean(0)
            sums[name][1] = sums[name][1] + len(batch) * values.var(0, ddof=ddof)
    n = sum(len(b) for b in batches)
    return {name: (s[0] / n, s[1] / n) for name, s in sums.items()}


def test_moving_statistics_become_the_batch_weighted_mean_of_batch_statistics():
    model = _model()
    images = np.random.default_rng(1).uniform(0, 255, (10, 8, 8, 3)).astype(np.float32)
    expected = _expected(model, np.array_split(images, 3))  # batch_size 4 -> 3 batches of 4, 3, 3
    assert batch_norm_stats.recompute(model, images, batch_size=4) == 2
    for name, (mean, variance) in expected.items():
        layer = model.get_layer(name)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-3)
        assert layer.momentum == 0.9


def test_frozen_layers_keep_their_statistics():
    model = _model()
    model.get_layer("body_bn").trainable = False
    images = np.random.default_rng(2).uniform(0, 255, (6, 8, 8, 3)).astype(np.float32)
    assert batch_norm_stats.recompute(model, images, batch_size=64) == 1
    np.testing.assert_array_equal(model.get_layer("body_bn").moving_mean.numpy(), 5.0)
    np.testing.assert_array_equal(model.get_layer("body_bn").moving_variance.numpy(), 7.0)
    assert not np.allclose(model.get_layer("head_bn").moving_mean.numpy(), 5.0)


def test_diverged_statistics_do_not_survive():
    model = _model()
    head_bn = model.get_layer("head_bn")
    head_bn.moving_variance.assign(np.full(head_bn.moving_variance.shape, np.nan, np.float32))
    images = np.random.default_rng(3).uniform(0, 255, (6, 8, 8, 3)).astype(np.float32)
    batch_norm_stats.recompute(model, images, batch_size=4)
    assert np.isfinite(head_bn.moving_variance.numpy()).all()


def test_no_images_is_an_error():
    with pytest.raises(ValueError, match="at least one image"):
        batch_norm_stats.recompute(_model(), np.zeros((0, 8, 8, 3), np.float32), batch_size=4)


def test_momentum_is_restored_when_a_batch_fails():
    model = _model()
    with pytest.raises(ValueError, match="incompatible"):  # the model's own error: 5 channels, not 3
        batch_norm_stats.recompute(model, np.zeros((4, 8, 8, 5), np.float32), batch_size=4)
    assert [layer.momentum for layer in batch_norm_stats.trainable_batch_norm_layers(model)] == [0.9, 0.9]
