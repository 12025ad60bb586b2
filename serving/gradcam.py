"""Grad-CAM on the last stage of a classifier's backbone, in TensorFlow ops (eager or traced).

The heat map is ReLU(sum_k w_k A_k), where A is the backbone's output feature
map (ResNet-18's stage 4) and w_k the spatial mean of d logit / d A_k: where
the model looked when it called the image high-risk. A backbone that outputs
a token sequence (B, tokens, C), as Swin does, has its tokens laid back on
their square grid (row-major, as Swin flattens its patches) first.

One implementation for evaluate's figures (`components/evaluate/gradcam.py`) and the served `explain`
signature (`serving/signature.py`), so the page shows the maps the report shows.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def has_backbone(model: keras.Model) -> bool:
    """Whether `model` has the nested `backbone` whose output Grad-CAM reads."""
    return any(layer.name == "backbone" for layer in model.layers)


def probe(model: keras.Model) -> keras.Model:
    """images -> (the backbone's feature map in the classifier's graph, the logit). Built once, eagerly: the
    served graph (`serving/signature.py`) calls it inside its traced function."""
    # The backbone is a nested model called once; its call node's output is the
    # feature map in the classifier's own graph (`backbone.output` is the inner one).
    features_in_graph = model.get_layer("backbone")._inbound_nodes[0].output_tensors[0]
    return keras.Model(model.inputs, [features_in_graph, model.output])


def heat_maps(probe_model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """float32 [n, H, W] in [0, 1] at the images' resolution, in TensorFlow ops alone (eager or traced)."""
    with tf.GradientTape() as tape:
        features, logits = probe_model(images, training=False)
        tape.watch(features)
        target = tf.reduce_sum(logits)
    gradients = tape.gradient(target, features)
    if len(features.shape) == 3:
        features, gradients = _as_grid(features), _as_grid(gradients)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
    maps = tf.image.resize(tf.cast(maps, tf.float32), tf.shape(images)[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return maps / tf.where(peak > 0, peak, 1.0)


def _as_grid(tokens):
    """(B, side * side, C) tokens in row-major order -> (B, side, side, C)."""
    count = tokens.shape[1]
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"Grad-CAM needs a square grid of tokens; the backbone gave {count}")
    return tf.reshape(tokens, (-1, side, side, tokens.shape[-1]))
