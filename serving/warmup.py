"""TF Serving's warmup file: requests the server runs on a new version before it answers clients.

TF Serving reads `<version>/assets.extra/tf_serving_warmup_requests`, a TFRecord file of serialized
`tensorflow.serving.PredictionLog` protos, and runs each on the freshly loaded model before marking the
version available: the first hospital request then does not pay for graph tracing, the tf.data decode
pipeline's start-up and memory allocation. Each record here is a PredictLog whose PredictRequest calls
`serving_default` with one encoded image, as clients send: a generated chest-film-like picture, once as PNG
and once as JPEG (both decode paths), never a patient's image (a hospital's model carries none).

The protos come from `tensorflow-serving-api`, the package TF Serving publishes for its clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from serving import contract

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # the path TF Serving looks for, inside a version


def synthetic_chest_images(side: int = 512) -> list[bytes]:
    """A generated grey picture shaped like a frontal chest film (two dark lung fields beside a light
    mediastinum, a darker background), encoded as PNG and as JPEG: the inputs TF Serving warms up with."""
    y, x = np.mgrid[0:side, 0:side] / side
    body = ((x - 0.5) / 0.45) ** 2 + ((y - 0.55) / 0.5) ** 2 < 1
    lungs = (((np.abs(x - 0.5) - 0.2) / 0.14) ** 2 + ((y - 0.45) / 0.3) ** 2) < 1
    grey = np.where(body, 200, 30) - np.where(lungs & body, 140, 0) + (40 * y).astype(int)
    pixels = tf.constant(np.clip(grey, 0, 255).astype(np.uint8)[..., None])
    return [tf.io.encode_png(pixels).numpy(), tf.io.encode_jpeg(pixels, quality=95).numpy()]


def predict_request(model_name: str, encoded_images: Sequence[bytes]) -> predict_pb2.PredictRequest:
    """A `serving_default` request with `encoded_images` (JPEG or PNG bytes) as one batch."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = contract.DEFAULT_SIGNATURE
    request.inputs[contract.INPUT_NAME].CopyFrom(tf.make_tensor_proto(list(encoded_images), dtype=tf.string))
    return request


def write_warmup_requests(saved_model_dir: Path, model_name: str, encoded_images: Sequence[bytes]) -> Path:
    """One warmup record per image (batches of one, what a single client sends) under `saved_model_dir`.

    Written in place: the SavedModel folder is still inside the export stage's temporary folder, which is
    renamed into place whole, and a push copies the finished folder."""
    path = Path(saved_model_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as records:
        for encoded in encoded_images:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=predict_request(model_name, [encoded])))
            records.write(log.SerializeToString())
    return path

