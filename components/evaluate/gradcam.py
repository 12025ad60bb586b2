"""Grad-CAM on the last stage of a classifier's backbone.

The heat map is ReLU(sum_k w_k A_k), where A is the backbone's output feature
map (ResNet-18's stage 4) and w_k the spatial mean of d logit / d A_k: where
the model looked when it called the image high-risk. A backbone that outputs
a token sequence (B, tokens, C), as Swin does, has its tokens laid back on
their square grid (row-major, as Swin flattens its patches) first.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf


def gradcam(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Heat maps in [0, 1], one per image, at the images' resolution."""
    # The backbone is a nested model called once; its call node's output is the
    # feature map in the classifier's own graph (`backbone.output` is the inner one).
    features_in_graph = model.get_layer("backbone")._inbound_nodes[0].output_tensors[0]
    probe = keras.Model(model.inputs, [features_in_graph, model.output])
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        features, logits = probe(images, training=False)
        tape.watch(features)
        target = tf.reduce_sum(logits)
    gradients = tape.gradient(target, features)
    if len(features.shape) == 3:
        features, gradients = _as_grid(features), _as_grid(gradients)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
    maps = tf.image.resize(tf.cast(maps, tf.float32), images.shape[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return (maps / tf.where(peak > 0, peak, 1.0)).numpy()


def _as_grid(tokens):
    """(B, side * side, C) tokens in row-major order -> (B, side, side, C)."""
    count = tokens.shape[1]
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"Grad-CAM needs a square grid of tokens; the backbone gave {count}")
    return tf.reshape(tokens, (-1, side, side, tokens.shape[-1]))
