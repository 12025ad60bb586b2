"""Batch-norm statistics recomputed after training (precise BN), an option.

A batch-norm layer trains on the statistics of each batch but predicts with
moving averages (Keras momentum 0.9, torch's 0.1) that start from mean 0 and
variance 1. With the study's schedule on our smallest data (126 training
rows, one batch per epoch, 30 unfrozen updates) 0.9^30 = 4% of that initial
variance remains: a ResNet-18 trained from scratch ended with its stem's
moving variance 2.1-2.2x the training images' own and the head's 1.4x
(`bench/batch_norm_staleness.py`, `bench/results/batch_norm_staleness.txt`),
and nearly every probability above 0.5 in inference mode. Pretrained bodies
start from ImageNet statistics that are already close, which is why the study
never met this.

The fix is the usual one (`torch.optim.swa_utils.update_bn`, fvcore's
`update_bn_stats`; see Wu & Johnson 2021, "Rethinking 'Batch' in
BatchNorm"): with the weights fixed, run the training images through the
model in training mode and set each moving mean and variance to the average
of its batch statistics, weighted by batch size. As in `update_bn`, dropout
stays on, as during training; images are not augmented, as at inference.
Only layers that trained in batch mode in the final phase (trainable ones)
are recomputed: a frozen layer already predicted with its own moving
statistics. A layer called more than once per forward pass (shared) would be
weighted wrongly; no model here shares one.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from components.train import input_pipeline


def trainable_batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recompute(model: keras.Model, images, batch_size: int) -> int:
    """Set the moving statistics of `model`'s trainable batch-norm layers from `images`; returns
    the number of layers recomputed. Eager: each layer reads its momentum when called, so a momentum
    of seen / (seen + batch) turns its moving average into a running mean over the batches. Batches are
    of equal size (+-1), so no batch is much smaller than the others."""
    if len(images) == 0:
        raise ValueError("recomputing batch-norm statistics needs at least one image")
    layers = trainable_batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:  # as torch's reset_running_stats: nothing stale (or NaN) survives the average
        layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(tf.ones_like(layer.moving_variance))
    seen = 0
    try:
        splits = -(-len(images) // batch_size)  # np.array_split's sizes: equal, +-1
        sizes = [len(images) // splits + (i < len(images) % splits) for i in range(splits)]
        for batch in input_pipeline.image_batches(images, sizes):
            for layer in layers:
                layer.momentum = seen / (seen + len(batch))
            model(tf.constant(batch), training=True)
            seen += len(batch)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)
