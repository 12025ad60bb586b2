"""The served graph: encoded image bytes in, probability of death out.

`write_saved_model(models, path)` writes one SavedModel holding every given
classifier (the k fold models of cross-validation, or one) with two
signatures:

- `serving_default`: `image_bytes` (string [None], JPEG or PNG bytes) ->
  `probability_of_death` (float32 [None]), `class` (int64 [None], 1 = died),
  `error` (string [None], "" when the item was scored).
- `predict_images`: `images` (float32 [None, S, S, 3], RGB 0..255, already
  through `images.preprocessing.preprocess`) -> `probability_of_death`,
  `class`. For batch jobs and benchmarks that decode elsewhere.
- `explain`: `image_bytes` -> serving_default's three outputs and what a person
  needs to judge them (`pipeline.app`'s page): `fold_probabilities` (float32
  [None, k], each member's probability through the same recalibration, so their
  spread is on the served scale; NaN for an item not scored), `model_input`
  (uint8 [None, S, S, 3], the image as the models saw it) and, when every member
  has a `backbone`, `gradcam` (float32 [None, S, S] in [0, 1], the members'
  Grad-CAM maps averaged, `serving/gradcam.py`; zeros for an item not scored).

Decoding is `images.preprocessing.preprocess`, the function training and
evaluation use, so served and trained inputs cannot drift apart.

A bad item never fails the batch: each item is first checked (JPEG or PNG
magic bytes, side lengths within `images.image_io`'s limits, read
from the header before anything is decoded) and then decoded inside a tf.data
pipeline with `ignore_errors()`, so a truncated or corrupt file is dropped
there instead of raising. Every item keeps its index; items that did not come
through get probability NaN, class -1 and an error message naming why, and
the others are scored as usual. Why not raise: TF Serving would answer the
whole request with one error status, and a client sending 64 X-rays could not
tell which one was bad.

The ensemble is the mean of the members' probabilities (sigmoid of each
member's logit): the k fold models are exactly the models whose
out-of-fold predictions the cross-validated metrics describe, so serving their
average needs no further training and no refit on all data that the CV
estimate would not cover. With a `recalibration` (intercept a, slope b, fitted
by export on the out-of-fold predictions) the served probability is
sigmoid(a + b * logit(mean)), and the threshold applies to it: the graph itself
serves calibrated risks, so no client can forget to recalibrate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf

from common.decision import called_died
from images import image_io, preprocessing
from serving import gradcam
from serving.contract import (CLASS, DEFAULT_SIGNATURE, ERROR, EXPLAIN_SIGNATURE, FOLD_PROBABILITIES, GRADCAM,
                              IMAGES_INPUT_NAME, IMAGES_SIGNATURE, INPUT_NAME, MODEL_INPUT, PROBABILITY)


# Per-item status codes; the message of each is the `error` output.
OK, NOT_JPEG_OR_PNG, BAD_DIMENSIONS, UNDECODABLE = range(4)
MESSAGES = (
    "",
    "not a JPEG or PNG (empty, or the first bytes are not a JPEG/PNG signature)",
    f"image size out of range ({image_io.MIN_SIDE} to {image_io.MAX_SIDE} px a side, "
    f"at most {image_io.MAX_PIXELS} pixels)",
    "corrupt or truncated image data: decoding failed",
)
# logit(p) clips p to [EPS, 1 - EPS], as evaluate's fits do (components/evaluate/decision.py).
LOGIT_EPS = 1e-6
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_size_of(model: keras.Model) -> int:
    """The square input side a classifier expects, checking the project's contract."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or shape[1] is None:
        raise ValueError(f"model {model.name!r} takes {shape}; expected (None, S, S, 3) RGB images")
    out = tuple(model.output_shape)
    if out[1:] != (1,):
        raise ValueError(f"model {model.name!r} outputs {out}; expected one logit per image (None, 1)")
    return int(shape[1])


def _header_status(encoded: tf.Tensor) -> tf.Tensor:
    """Status of one item from its header alone; raises on a header too broken to read."""
    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 3), _JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_MAGIC)

    def png_header():
        # IHDR: width and height big-endian at bytes 16..23.
        ihdr = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8), tf.int64)
        tf.debugging.assert_equal(tf.size(ihdr), 8, message="PNG header is cut short")
        width = ((ihdr[0] * 256 + ihdr[1]) * 256 + ihdr[2]) * 256 + ihdr[3]
        height = ((ihdr[4] * 256 + ihdr[5]) * 256 + ihdr[6]) * 256 + ihdr[7]
        return tf.stack([height, width])

    def jpeg_header():  # raises on a malformed header: the item then counts as undecodable
        return tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)

    def no_header():
        return tf.constant([0, 0], tf.int64)

    size = tf.cond(is_png, png_header, lambda: tf.cond(is_jpeg, jpeg_header, no_header))
    dims_ok = tf.logical_and(
        tf.logical_and(tf.reduce_min(size) >= image_io.MIN_SIDE, tf.reduce_max(size) <= image_io.MAX_SIDE),
        size[0] * size[1] <= image_io.MAX_PIXELS)
    return tf.case([
        (tf.logical_not(tf.logical_or(is_jpeg, is_png)), lambda: tf.constant(NOT_JPEG_OR_PNG)),
        (tf.logical_not(dims_ok), lambda: tf.constant(BAD_DIMENSIONS)),
    ], default=lambda: tf.constant(OK))


def decode_batch(image_bytes: tf.Tensor, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(status int32 [n], images float32 [n, S, S, 3]); images of non-OK items are zeros."""
    n = tf.shape(image_bytes, out_type=tf.int64)[0]

    def one(index, encoded):
        status = _header_status(encoded)
        image = tf.cond(tf.equal(status, OK), lambda: preprocessing.preprocess(encoded, image_size),
                        lambda: tf.zeros([image_size, image_size, 3], tf.float32))
        return index, status, image

    items = tf.data.Dataset.from_tensor_slices((tf.range(n), image_bytes))
    items = items.map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    # A sentinel keeps the batch non-empty when every item failed.
    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), tf.constant(OK), tf.zeros([image_size, image_size, 3], tf.float32)))
    indices, statuses, decoded = items.concatenate(sentinel).batch(n + 1).get_single_element()
    indices, statuses, decoded = indices[:-1], statuses[:-1], decoded[:-1]
    where = indices[:, None]
    status = tf.tensor_scatter_nd_update(tf.fill([n], UNDECODABLE), where, statuses)
    images = tf.scatter_nd(where, decoded, tf.stack([n, image_size, image_size, 3]))
    return status, images


def recalibrate(probability: tf.Tensor, intercept: float, slope: float) -> tf.Tensor:
    """sigmoid(intercept + slope * logit(p)), float32; NaN stays NaN."""
    clipped = tf.clip_by_value(probability, LOGIT_EPS, 1 - LOGIT_EPS)
    return tf.sigmoid(intercept + slope * (tf.math.log(clipped) - tf.math.log1p(-clipped)))


class EnsembleServer:
    """The members and the functions that become signatures."""

    def __init__(self, models: Sequence[keras.Model], threshold: float = 0.5,
                 recalibration: tuple[float, float] | None = None):
        if not models:
            raise ValueError("no models to export")
        sizes = {image_size_of(m) for m in models}
        if len(sizes) != 1:
            raise ValueError(f"the models take different image sizes: {sorted(sizes)}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.models = list(models)
        self.image_size = sizes.pop()
        self.threshold = float(threshold)
        self.recalibration = recalibration
        # Built eagerly here: a Keras model cannot be made inside the traced signature.
        self.probes = [gradcam.probe(m) for m in self.models] if all(map(gradcam.has_backbone, self.models)) \
            else None

    def _calibrated(self, probability: tf.Tensor) -> tf.Tensor:
        return probability if self.recalibration is None else recalibrate(probability, *self.recalibration)

    def _member_probabilities(self, images: tf.Tensor) -> list[tf.Tensor]:
        return [tf.sigmoid(tf.reshape(tf.cast(m(images, training=False), tf.float32), [-1])) for m in self.models]

    def probabilities(self, images: tf.Tensor) -> tf.Tensor:
        """Mean over members of sigmoid(logit), float32 [n], recalibrated when a recalibration is given."""
        per_member = self._member_probabilities(images)
        return self._calibrated(tf.add_n(per_member) / float(len(per_member)))

    def _classes(self, probability: tf.Tensor) -> tf.Tensor:
        return tf.cast(called_died(probability, self.threshold), tf.int64)

    def predict_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        probability = self.probabilities(images)
        return {PROBABILITY: probability, CLASS: self._classes(probability)}

    def predict_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        status, images = decode_batch(image_bytes, self.image_size)
        ok = tf.equal(status, OK)
        rows = tf.where(ok)
        n = tf.shape(image_bytes, out_type=tf.int64)[0]
        # Keras convolutions fail on an empty batch, so skip the models when nothing decoded.
        scored = tf.cond(tf.size(rows) > 0, lambda: self.probabilities(tf.gather_nd(images, rows)),
                         lambda: tf.zeros([0], tf.float32))
        probability = tf.tensor_scatter_nd_update(tf.fill([n], float("nan")), rows, scored)
        classes = tf.where(ok, self._classes(probability), tf.constant(-1, tf.int64))
        return {PROBABILITY: probability, CLASS: classes, ERROR: tf.gather(tf.constant(MESSAGES), status)}

    def explain_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        """`predict_bytes`'s outputs, each member's calibrated probability, the models' input and its Grad-CAM."""
        status, images = decode_batch(image_bytes, self.image_size)
        ok = tf.equal(status, OK)
        rows = tf.where(ok)
        n = tf.shape(image_bytes, out_type=tf.int64)[0]
        k, size = len(self.models), self.image_size

        def explained(scored_images):
            members = tf.stack(self._member_probabilities(scored_images), axis=1)
            if self.probes is None:
                return members, tf.zeros([0, size, size])
            return members, tf.add_n([gradcam.heat_maps(p, scored_images) for p in self.probes]) / float(k)

        members, maps = tf.cond(tf.size(rows) > 0, lambda: explained(tf.gather_nd(images, rows)),
                                lambda: (tf.zeros([0, k]), tf.zeros([0, size, size])))
        probability = tf.tensor_scatter_nd_update(tf.fill([n], float("nan")), rows,
                                                  self._calibrated(tf.reduce_mean(members, axis=1)))
        outputs = {PROBABILITY: probability,
                   CLASS: tf.where(ok, self._classes(probability), tf.constant(-1, tf.int64)),
                   ERROR: tf.gather(tf.constant(MESSAGES), status),
                   FOLD_PROBABILITIES: tf.tensor_scatter_nd_update(tf.fill([n, k], float("nan")), rows,
                                                                   self._calibrated(members)),
                   MODEL_INPUT: tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)}
        if self.probes is not None:
            outputs[GRADCAM] = tf.scatter_nd(rows, maps, tf.stack([n, size, size]))
        return outputs


def write_saved_model(models: Sequence[keras.Model], path: Path, threshold: float = 0.5,
                      recalibration: tuple[float, float] | None = None) -> EnsembleServer:
    """Write the SavedModel (its three signatures) to `path`, which must not exist yet."""
    server = EnsembleServer(models, threshold, recalibration)
    size = server.image_size
    archive = keras.export.ExportArchive()
    for model in server.models:
        archive.track(model)
    archive.add_endpoint(DEFAULT_SIGNATURE, server.predict_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
    archive.add_endpoint(IMAGES_SIGNATURE, server.predict_images,
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=IMAGES_INPUT_NAME)])
    archive.add_endpoint(EXPLAIN_SIGNATURE, server.explain_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
    archive.write_out(str(path), verbose=False)
    return server
