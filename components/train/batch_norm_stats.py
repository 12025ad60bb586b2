"""Batch-norm statistics recomputed after training (precise BN), an option.

A batch-norm layer trains on the statistics of each batch but predicts with
moving averages (Keras momentum 0.9, torch's 0.1) that lag the weights. With
the study's schedule on our smallest data (126 training rows, one batch per
epoch, 30 unfrozen updates) the averages of a ResNet-18 trained from scratch
stay about 2x the population variance at every layer, and the head's about
6x (measured on the training images of the first fold of
`results/table2_patient_moving_bn`): inference-mode outputs then sit far from
the training-mode ones, nearly every probability above 0.5. Pretrained bodies start from ImageNet
statistics that are already close, which is why the study never met this.

The fix is the standard one (Wu & Johnson 2021, "Rethinking 'Batch' in
BatchNorm"; `torch.optim.swa_utils.update_bn`): with the weights fixed, run
the training images through the model in training mode and set each moving
mean and variance to the average of its batch statistics, weighted by batch
size. Like `update_bn`, dropout stays on, as during training; images are not
augmented, as at inference. Only layers that trained in batch mode in the
final phase (trainable ones) are recomputed: a frozen layer already
predicted with its own moving statistics.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def trainable_batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recompute(model: keras.Model, images: np.ndarray, batch_size: int) -> int:
    """Set the moving statistics of `model`'s trainable batch-norm layers from `images`; returns
    the number of layers recomputed. Eager: each layer reads its momentum when called, so a momentum
    of seen / (seen + batch) turns its moving average into a running mean over the batches. Batches are
    of equal size (+-1), so no batch of one or two images gives a degenerate variance."""
    layers = trainable_batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    seen = 0
    try:
        for batch in np.array_split(images, max(1, -(-len(images) // batch_size))):
            for layer in layers:
                layer.momentum = seen / (seen + len(batch))
            model(tf.constant(batch), training=True)
            seen += len(batch)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)
