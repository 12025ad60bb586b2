"""A classifier's logits in inference mode, as one traced function: training's validation, evaluate's
test-time augmentation and the benchmarks call the same one."""

from __future__ import annotations

import keras
import tensorflow as tf


def make_predict(model: keras.Model):
    """A tf.function: images (any batch size) -> float32 logits, inference mode."""
    @tf.function(input_signature=[tf.TensorSpec([None] + list(model.input_shape[1:]), tf.float32)])
    def predict(images):
        return tf.cast(model(images, training=False)[:, 0], tf.float32)
    return predict
