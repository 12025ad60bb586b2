"""The one image preprocessing shared by training, evaluation and serving.

Encoded bytes (JPEG or PNG, gray or RGB, 8 or 16 bits) -> 8-bit RGB -> shorter
side resized to `image_size` -> centre crop `image_size` x `image_size`,
float32 in [0, 255]. A 16-bit gray PNG is stretched from its own minimum to
maximum (`stretch_to_uint8`), since X-ray PNGs often use 12 of the 16 bits;
`image_io` converts such files with this same function when it writes the
TFRecords, so a served 16-bit file gives the pixels training saw.
This is fastai's `Resize(224)` (crop method) on validation images, which the
study used. ImageNet mean/std normalisation is not here: it is the first
layer of every model (`models.preprocessor`), so no caller can forget it.
"""

from __future__ import annotations

import tensorflow as tf

IMAGE_SIZE = 224
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_GRAY16 = b"\x10\x00"  # IHDR bit depth 16, colour type 0 (gray), at bytes 24-25 of the file


def stretch_to_uint8(values: tf.Tensor) -> tf.Tensor:
    """High-bit-depth gray (any shape) -> uint8, its own minimum to 0 and maximum to 255 (a flat image -> 0)."""
    values = tf.cast(values, tf.float64)
    low, high = tf.reduce_min(values), tf.reduce_max(values)
    scale = tf.where(high > low, 255.0 / (high - low), tf.constant(0.0, tf.float64))
    return tf.cast(tf.round(tf.clip_by_value((values - low) * scale, 0.0, 255.0)), tf.uint8)


def _is_gray16_png(encoded: tf.Tensor) -> tf.Tensor:
    head = tf.strings.join([tf.strings.substr(encoded, 0, 26), b"\0" * 26])  # substr past the end would raise
    return tf.logical_and(tf.equal(tf.strings.substr(head, 0, 8), _PNG_MAGIC),
                          tf.equal(tf.strings.substr(head, 24, 2), _GRAY16))


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Bytes -> uint8 [H, W, 3]; fails with InvalidArgumentError on non-images."""
    image = tf.cond(
        _is_gray16_png(encoded),
        lambda: tf.image.grayscale_to_rgb(stretch_to_uint8(tf.io.decode_png(encoded, channels=1, dtype=tf.uint16))),
        lambda: tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False))
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
