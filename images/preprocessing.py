"""The one image preprocessing shared by training, evaluation and serving.

Encoded bytes (JPEG or PNG, gray or RGB) -> RGB -> shorter side resized to
`image_size` -> centre crop `image_size` x `image_size`, float32 in [0, 255].
This is fastai's `Resize(224)` (crop method) on validation images, which the
study used. ImageNet mean/std normalisation is not here: it is the first
layer of every model (`models.preprocessor`), so no caller can forget it.
"""

from __future__ import annotations

import tensorflow as tf

IMAGE_SIZE = 224


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Bytes -> uint8 [H, W, 3]; fails with InvalidArgumentError on non-images."""
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_and_crop(image: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """Shorter side to `image_size` (antialiased bilinear), then the centre square."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(image_size, tf.float32) / tf.reduce_min(shape)
    new_size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), image_size)
    resized = tf.image.resize(image, new_size, method="bilinear", antialias=True)
    cropped = tf.image.resize_with_crop_or_pad(resized, image_size, image_size)
    return tf.clip_by_value(cropped, 0.0, 255.0)


def preprocess(encoded: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """Encoded image bytes -> float32 [image_size, image_size, 3] in [0, 255]."""
    return resize_and_crop(decode_image(encoded), image_size)
