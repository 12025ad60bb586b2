"""The fused batch norm computes what Keras' BatchNormalization computes (and torch's running variance)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.fused_batch_norm import FusedBatchNormalization


def _pair(channels=6, seed=0):
    """A Keras and a fused batch norm with the same random gamma, beta and moving statistics."""
    rng = np.random.default_rng(seed)
    layers = [keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9),
              FusedBatchNormalization(epsilon=1e-5, momentum=0.9)]
    values = [rng.uniform(0.5, 2.0, channels), rng.normal(0, 1, channels), rng.normal(0, 1, channels),
              rng.uniform(0.5, 2.0, channels)]  # gamma, beta, moving mean, moving variance
    for layer in layers:
        layer.build((None, 5, 7, channels))
        layer.set_weights([v.astype("float32") for v in values])
    return layers


def _inputs(shape=(4, 5, 7, 6), seed=1):
    return tf.constant(np.random.default_rng(seed).normal(2.0, 3.0, shape).astype("float32"))


def test_inference_output_equals_keras_batch_norm():
    reference, fused = _pair()
    x = _inputs()
    np.testing.assert_allclose(fused(x, training=False), reference(x, training=False), atol=1e-5)


def test_training_output_gradients_and_moving_mean_equal_keras_moving_variance_is_unbiased():
    reference, fused = _pair()
    x = _inputs()
    outputs, gradients = [], []
    for layer in (reference, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(y.shape[-1], dtype=y.dtype)) + tf.reduce_sum(y ** 2)
        outputs.append(y.numpy())
        gradients.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-4)
    for ours, theirs in zip(gradients[1], gradients[0]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(fused.moving_mean.numpy(), reference.moving_mean.numpy(), atol=1e-5)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    batch_variance = np.var(x.numpy(), axis=(0, 1, 2))
    start_variance = (reference.moving_variance.numpy() - 0.1 * batch_variance) / 0.9
    np.testing.assert_allclose(fused.moving_variance.numpy(),
                               0.9 * start_variance + 0.1 * batch_variance * n / (n - 1), rtol=1e-5)


def test_frozen_layer_uses_moving_statistics_even_when_training():
    reference, fused = _pair()
    fused.trainable = False
    x = _inputs()
    before = fused.moving_mean.numpy().copy()
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=False), atol=1e-5)
    np.testing.assert_array_equal(fused.moving_mean.numpy(), before)


@pytest.mark.parametrize("training", [False, True])
def test_bfloat16_activations_stay_bfloat16_and_close_to_float32(training):
    reference, fused = _pair()
    fused_bf16 = FusedBatchNormalization(epsilon=1e-5, momentum=0.9, dtype="mixed_bfloat16")
    fused_bf16.build((None, 5, 7, 6))
    fused_bf16.set_weights(fused.get_weights())
    x = _inputs()
    y = fused_bf16(tf.cast(x, tf.bfloat16), training=training)
    assert y.dtype == tf.bfloat16 and fused_bf16.moving_mean.dtype == "float32"
    np.testing.assert_allclose(tf.cast(y, tf.float32), fused(x, training=training), atol=0.05)


def test_inputs_the_kernel_cannot_take_run_keras_batch_norm():
    reference = keras.layers.BatchNormalization(epsilon=1e-5)
    fused = FusedBatchNormalization(epsilon=1e-5)
    x = tf.constant(np.random.default_rng(2).normal(size=(8, 3)).astype("float32"))
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=True), atol=1e-5)


def test_saved_model_file_round_trip_keeps_the_fused_layer(tmp_path):
    inputs = keras.Input((5, 7, 6))
    model = keras.Model(inputs, FusedBatchNormalization(name="bn")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("bn"), FusedBatchNormalization)
    x = _inputs()
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
