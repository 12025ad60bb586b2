"""Tiny classifiers honouring the models' contract, and fold folders as the train stage writes them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from common import files
from components import base

IMAGE_SIZE = 64
SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "sample_data" / "covid-chestxray-sample" / "images"


def tiny_classifier(seed: int, image_size: int = IMAGE_SIZE):
    """float32 RGB [0, 255] in, ImageNet normalisation inside, one logit out; a few hundred weights."""
    import keras

    from models.preprocessor import ImageNetNormalization
    keras.utils.set_random_seed(seed)
    images = keras.Input((image_size, image_size, 3), dtype="float32", name="images")
    x = ImageNetNormalization(name="preprocessor")(images)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logit = keras.layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(images, logit, name=f"tiny_{seed}")


def tiny_backbone_classifier(seed: int, image_size: int = IMAGE_SIZE):
    """A tiny classifier built as the real ones are (`models.build_image_classifier`), with the nested `backbone`
    Grad-CAM reads."""
    import keras

    import models
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3))
    features = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inputs)
    return models.build_image_classifier(keras.Model(inputs, features), image_size=image_size)


def write_folds(train_dir: Path, k: int = 3, image_size: int = IMAGE_SIZE) -> list[Path]:
    """`fold_<i>/model.keras` for i < k, as the train stage lays them out."""
    paths = []
    for fold in range(k):
        path = Path(train_dir) / f"fold_{fold}" / "model.keras"
        path.parent.mkdir(parents=True, exist_ok=True)
        tiny_classifier(fold, image_size).save(path)
        paths.append(path)
    return paths


def write_train_records(train_dir: Path, k: int = 3, weights: str | None = None, split: str = "patient",
                        images_per_fold: int = 4) -> None:
    """`train_summary.json` and each `fold_<i>/predictions.csv` as the train stage writes them, on generated rows:
    patient `p<i>-<j>` has two images, patients with even j died, the last fold's rows are imputed."""
    from components.train import outputs as train_outputs

    train_outputs.write_summary(train_dir, {"variant": "original_weights", "labels": "observed", "split": split,
                                            "weights": weights})
    for fold in range(k):
        folder = train_outputs.fold_dir(train_dir, fold)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / train_outputs.PREDICTIONS_CSV, "w", newline="") as handle:
            table = csv.writer(handle)
            table.writerow(train_outputs.PREDICTION_COLUMNS)
            for image in range(images_per_fold):
                patient = f"p{fold}-{image // 2}"
                table.writerow([f"{patient}-{image % 2}.jpg", patient, int((image // 2) % 2 == 0),
                                "imputed" if fold == k - 1 else "observed", 0.5])


def fake_artifact(path: Path, name: str) -> base.Artifact:
    """A finished artifact record over an existing folder, for feeding a component directly."""
    return base.Artifact(Path(path), {"fingerprint": files.sha256_file(next(Path(path).rglob("*.*"))) + name})


def png_bytes(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def sixteen_bit_png(size=(80, 96)) -> bytes:
    """A 12-bit range stored in 16 bits, as X-ray PNGs often are."""
    values = ((np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 7) % 4096).astype(np.uint16)
    return png_bytes(values)


def sample_jpegs(count: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted(SAMPLE_IMAGES.glob("*.jpg"))[:count]]


def keras_probabilities(keras_models, encoded: bytes, image_size: int = IMAGE_SIZE) -> float:
    """The reference: mean sigmoid of each Keras model on `preprocess(encoded)`."""
    import tensorflow as tf

    from images import preprocessing
    image = preprocessing.preprocess(tf.constant(encoded), image_size)[None]
    logits = [float(m.predict_on_batch(image).reshape(-1)[0]) for m in keras_models]
    return float(np.mean([1.0 / (1.0 + np.exp(-z)) for z in logits]))
