"""The study's training augmentations: zoom, rotation, warp and brightness.

fastai's `aug_transforms` (the study's defaults: max_zoom=1.1, max_rotate=10,
max_warp=0.2, max_lighting=0.2, each applied with p=0.75, no flips) composes
zoom, rotation and warp into ONE projective transform, so each training image
is interpolated once, with reflection padding, and then brightened in logit
space. Keras' core layers (RandomZoom, RandomRotation, RandomPerspective,
RandomBrightness) in sequence interpolate once per geometric layer.

Both are here: `fused_augment` (the default, fastai's semantics) and
`keras_layers_augment` (Keras core layers, for comparison and by flag).
`docs/augmentation_comparison.png` (written by `bench/augmentation_grid.py`)
compares them on a real X-ray; the fused transform was chosen because it keeps
the image sharp (one bilinear pass instead of three), keeps borders free of
black wedges (reflection padding; RandomPerspective can only fill a constant)
and is faster. The fused transform is also stateless: every random number
derives from (seed, batch index), so an epoch is identical when re-run, which
resume after a kill relies on.

All functions take and return float32 batches (B, H, W, 3) in [0, 255]; their
settings are `AugmentSettings` (the pipeline's are `components.configs.AugmentConfig`,
`TrainConfig.augmentation`). Training and evaluate's test-time augmentation share them.
"""

from __future__ import annotations

import math
from typing import Protocol

import keras
import tensorflow as tf


class AugmentSettings(Protocol):
    """What the augmentations read (components.configs.AugmentConfig documents each)."""

    method: str
    max_zoom: float
    max_rotate: float
    max_warp: float
    max_lighting: float
    p_affine: float
    p_lighting: float


def _uniform(seed, shape, low, high):
    return tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high)


def _homography(src, dst):
    """(B, 8) ImageProjectiveTransform parameters mapping each dst point onto its src point."""
    rows, rhs = [], []
    for i in range(4):
        x, y = dst[:, i, 0], dst[:, i, 1]
        u, v = src[:, i, 0], src[:, i, 1]
        zero, one = tf.zeros_like(x), tf.ones_like(x)
        rows.append(tf.stack([x, y, one, zero, zero, zero, -u * x, -u * y], axis=1))
        rows.append(tf.stack([zero, zero, zero, x, y, one, -v * x, -v * y], axis=1))
        rhs.extend([u, v])
    matrix = tf.stack(rows, axis=1)  # (B, 8, 8)
    return tf.linalg.solve(tf.cast(matrix, tf.float64), tf.cast(tf.stack(rhs, axis=1)[..., None], tf.float64))[..., 0]


def corner_targets(batch_size, height, width, config: AugmentSettings, seed):
    """Where the four image corners go under warp, then rotation, then zoom: (src, dst) (B, 4, 2) in pixels."""
    seeds = tf.random.experimental.stateless_split(seed, 8)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    centre = tf.stack([(w - 1) / 2, (h - 1) / 2])
    half = tf.stack([(w - 1) / 2, (h - 1) / 2])
    unit = tf.constant([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # (x, y) corners in [-1, 1]
    src = centre + unit * half
    src = tf.tile(src[None], [batch_size, 1, 1])

    def applied(s, p):
        return tf.cast(_uniform(s, [batch_size], 0.0, 1.0) < p, tf.float32)

    # Warp (fastai's Warp): corner (a, b) -> (a - a*b*mag_y, b - a*b*mag_x) in [-1, 1] coordinates.
    mags = _uniform(seeds[0], [batch_size, 2], -config.max_warp, config.max_warp) * applied(seeds[1], config.p_affine)[:, None]
    ab = unit[:, 0] * unit[:, 1]
    warped = tf.stack([unit[None, :, 0] - ab[None] * mags[:, None, 1],
                       unit[None, :, 1] - ab[None] * mags[:, None, 0]], axis=-1)  # (B, 4, 2)
    points = centre + warped * half
    # Rotation about the centre.
    angle = _uniform(seeds[2], [batch_size], -config.max_rotate, config.max_rotate) * math.pi / 180
    angle *= applied(seeds[3], config.p_affine)
    cos, sin = tf.cos(angle)[:, None], tf.sin(angle)[:, None]
    rel = points - centre
    points = centre + tf.stack([cos * rel[..., 0] - sin * rel[..., 1], sin * rel[..., 0] + cos * rel[..., 1]], axis=-1)
    # Zoom in by z, the visible window placed anywhere (fastai's Zoom with random row/col pct).
    zoom = 1.0 + (_uniform(seeds[4], [batch_size], 1.0, config.max_zoom) - 1.0) * applied(seeds[5], config.p_affine)
    pct = _uniform(seeds[6], [batch_size, 2], 0.0, 1.0)
    size = tf.stack([w - 1, h - 1])
    origin = pct * size * (1.0 - 1.0 / zoom[:, None])
    dst = (points - origin[:, None, :]) * zoom[:, None, None]
    return src, dst


def fused_augment(images, config: AugmentSettings, seed):
    """Zoom + rotation + warp as one projective transform (reflect padding), then fastai's brightness."""
    shape = tf.shape(images)
    batch_size, height, width = shape[0], shape[1], shape[2]
    src, dst = corner_targets(batch_size, height, width, config, seed)
    transforms = tf.cast(_homography(src, dst), tf.float32)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    return brightness(out, config, tf.random.experimental.stateless_split(seed, 9)[8])


def brightness(images, config: AugmentSettings, seed):
    """fastai's Brightness: x -> sigmoid(logit(x) + logit(change)), change ~ U(0.5 +- max_lighting), p_lighting."""
    if config.max_lighting <= 0:
        return images
    batch_size = tf.shape(images)[0]
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    change = _uniform(s1, [batch_size], 0.5 - config.max_lighting, 0.5 + config.max_lighting)
    change = tf.where(_uniform(s2, [batch_size], 0.0, 1.0) < config.p_lighting, change, 0.5)
    x = tf.clip_by_value(images / 255.0, 1e-4, 1 - 1e-4)
    logits = tf.math.log(x / (1 - x)) + tf.math.log(change / (1 - change))[:, None, None, None]
    return tf.sigmoid(logits) * 255.0


def keras_layers(config: AugmentSettings, seed: int) -> keras.Sequential:
    """The same four augmentations as Keras core layers in sequence (three interpolations)."""
    return keras.Sequential([
        keras.layers.RandomZoom(height_factor=(-(config.max_zoom - 1.0), 0.0), fill_mode="reflect", seed=seed),
        keras.layers.RandomRotation(config.max_rotate / 360.0, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomPerspective(factor=config.p_affine, scale=config.max_warp, seed=seed + 2),
        keras.layers.RandomBrightness(config.max_lighting, value_range=(0.0, 255.0), seed=seed + 3),
    ], name="keras_augmentation")


def make_augment_fn(config: AugmentSettings, seed: int):
    """(images, batch_seed (2,) int) -> augmented images, for `Dataset.map` on batches."""
    if config.method == "none":
        return lambda images, batch_seed: images
    if config.method == "fused":
        return lambda images, batch_seed: fused_augment(images, config, batch_seed)
    chain = keras_layers(config, seed)
    return lambda images, batch_seed: tf.clip_by_value(chain(images, training=True), 0.0, 255.0)


def make_dataset_augment_fn(config: AugmentSettings, seed: int):
    """`make_augment_fn` for training pipelines: the fused transform traced once, so every pipeline that
    maps it (a fold builds four) calls one graph instead of tracing its ~250 ops again (0.2 s a pipeline);
    the batches are the same. (Called eagerly, as test-time augmentation does, the untraced one stays:
    graph rewrites round differently. Keras' layers need static shapes, so they are not traced.)"""
    fn = make_augment_fn(config, seed)
    if config.method != "fused":
        return fn
    return tf.function(fn, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                            tf.TensorSpec([2], tf.int64)])
