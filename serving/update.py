"""A served model updated for a new site: the same signatures, the update inside the graph.

`write_updated_saved_model` wraps an exported SavedModel: its `serving_default` and `predict_images` call the
original's and return sigmoid(intercept + slope * logit(p)) of its probability (`signature.recalibrate`), the class
by the same threshold rule (`common.decision`), the original's per-item errors unchanged. TF Serving then serves the
updated risks with no client-side step, and the original version stays where it was. `assets.extra/` (model card,
warmup requests) is copied from the original for the caller to amend.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tensorflow as tf

from common.decision import called_died
from serving import signature
from serving.contract import (CLASS, DEFAULT_SIGNATURE, ERROR, IMAGES_INPUT_NAME, IMAGES_SIGNATURE, INPUT_NAME,
                              PROBABILITY)

ASSETS_EXTRA = "assets.extra"


class UpdatedServer(tf.Module):
    """The original SavedModel and the update applied to its probabilities."""

    def __init__(self, original_dir: Path, intercept: float, slope: float, threshold: float):
        super().__init__()
        self.original = tf.saved_model.load(str(original_dir))
        self.intercept, self.slope, self.threshold = float(intercept), float(slope), float(threshold)
        size = int(self.original.signatures[IMAGES_SIGNATURE].structured_input_signature[1][IMAGES_INPUT_NAME].shape[1])
        self.predict_bytes = tf.function(self._predict_bytes,
                                         input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
        self.predict_images = tf.function(self._predict_images, input_signature=[
            tf.TensorSpec([None, size, size, 3], tf.float32, name=IMAGES_INPUT_NAME)])

    def _updated(self, outputs) -> dict[str, tf.Tensor]:
        probability = signature.recalibrate(outputs[PROBABILITY], self.intercept, self.slope)
        scored = tf.greater_equal(outputs[CLASS], 0)  # class -1: the item could not be read
        classes = tf.where(scored, tf.cast(called_died(probability, self.threshold), tf.int64),
                           tf.constant(-1, tf.int64))
        return {PROBABILITY: probability, CLASS: classes}

    def _predict_bytes(self, image_bytes):
        outputs = self.original.signatures[DEFAULT_SIGNATURE](**{INPUT_NAME: image_bytes})
        return {**self._updated(outputs), ERROR: outputs[ERROR]}

    def _predict_images(self, images):
        return self._updated(self.original.signatures[IMAGES_SIGNATURE](**{IMAGES_INPUT_NAME: images}))


def write_updated_saved_model(original_dir: Path, path: Path, intercept: float, slope: float,
                              threshold: float) -> None:
    """Write the updated SavedModel to `path` (which must not exist yet), with the original's `assets.extra/`."""
    server = UpdatedServer(original_dir, intercept, slope, threshold)
    tf.saved_model.save(server, str(path), signatures={DEFAULT_SIGNATURE: server.predict_bytes,
                                                       IMAGES_SIGNATURE: server.predict_images})
    if (Path(original_dir) / ASSETS_EXTRA).is_dir():
        shutil.copytree(Path(original_dir) / ASSETS_EXTRA, Path(path) / ASSETS_EXTRA)
