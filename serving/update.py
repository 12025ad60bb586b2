"""A served model updated for a new site: the same signatures, the update inside the graph.

`write_updated_saved_model` wraps an exported SavedModel: its `serving_default` and `predict_images` call the
original's and return sigmoid(intercept + slope * logit(p)) of its probability (`signature.recalibrate`), the class
by the same threshold rule (`common.decision`), the original's per-item errors unchanged. An original with the page's
`explain` signature keeps it, its fold probabilities updated the same way and its Grad-CAM and model input as they
were; an older export without it gets none. TF Serving then serves the
updated risks with no client-side step, and the original version stays where it was. `assets.extra/` (model card,
warmup requests) is copied from the original for the caller to amend.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tensorflow as tf

from common.decision import called_died
from serving import signature
from serving.contract import (CLASS, DEFAULT_SIGNATURE, ERROR, EXPLAIN_SIGNATURE, FOLD_PROBABILITIES,
                              IMAGES_INPUT_NAME, IMAGES_SIGNATURE, INPUT_NAME, PROBABILITY)

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
        self.explain_bytes = tf.function(self._explain_bytes, input_signature=[
            tf.TensorSpec([None], tf.string, name=INPUT_NAME)]) if EXPLAIN_SIGNATURE in self.original.signatures else None

    def exported_signatures(self) -> dict:
        """The original's signatures, each updated."""
        found = {DEFAULT_SIGNATURE: self.predict_bytes, IMAGES_SIGNATURE: self.predict_images}
        return found if self.explain_bytes is None else {**found, EXPLAIN_SIGNATURE: self.explain_bytes}

    def _updated(self, outputs) -> dict[str, tf.Tensor]:
        probability = signature.recalibrate(outputs[PROBABILITY], self.intercept, self.slope)
        scored = tf.greater_equal(outputs[CLASS], 0)  # class -1: the item could not be read
        classes = tf.where(scored, tf.cast(called_died(probability, self.threshold), tf.int64),
                           tf.constant(-1, tf.int64))
        return {PROBABILITY: probability, CLASS: classes}

    def _predict_bytes(self, image_bytes):
        outputs = self.original.signatures[DEFAULT_SIGNATURE](**{INPUT_NAME: image_bytes})
        return {**self._updated(outputs), ERROR: outputs[ERROR]}

    def _explain_bytes(self, image_bytes):
        outputs = self.original.signatures[EXPLAIN_SIGNATURE](**{INPUT_NAME: image_bytes})
        folds = signature.recalibrate(outputs[FOLD_PROBABILITIES], self.intercept, self.slope)
        return {**outputs, **self._updated(outputs), FOLD_PROBABILITIES: folds}

    def _predict_images(self, images):
        return self._updated(self.original.signatures[IMAGES_SIGNATURE](**{IMAGES_INPUT_NAME: images}))


def write_updated_saved_model(original_dir: Path, path: Path, intercept: float, slope: float,
                              threshold: float) -> None:
    """Write the updated SavedModel to `path` (which must not exist yet), with the original's `assets.extra/`."""
    server = UpdatedServer(original_dir, intercept, slope, threshold)
    tf.saved_model.save(server, str(path), signatures=server.exported_signatures())
    if (Path(original_dir) / ASSETS_EXTRA).is_dir():
        shutil.copytree(Path(original_dir) / ASSETS_EXTRA, Path(path) / ASSETS_EXTRA)
