"""The TFRecord example schema: Model Garden's image keys plus this study's labels.

Every usable image is stored once with its observed label (-1 when none), the
label a variant trains on (observed, else the forest's), and where that label
came from, so variants select their rows at read time and no stage can take
an imputed label for an observed one. The imputation forest's features
(`clinical/*`, encoded by common/imputation_forest.py) ride along, so the
train stage can fit the forest inside each training fold; shards written
before them read as 'not recorded' (-1) through the spec's defaults. So does
`patient/site` (the patient's site, for `--split=site`): '' in older shards.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping

import tensorflow as tf

from common import imputation_forest

LABEL_SOURCES = ("observed", "imputed", "none")  # none: no label and no imputation (data without the flags)


# The forest's features under their TFRecord keys, in the forest's order.
CLINICAL_KEYS = tuple(f"clinical/{name}" for name in imputation_forest.FEATURE_NAMES)


def _bytes(value: bytes | str) -> tf.train.Feature:
    value = value.encode() if isinstance(value, str) else value
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def number_or_nan(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def make_example(encoded: bytes, image_format: str, record: Mapping[str, Any]) -> tf.train.Example:
    """One image and its row (from ingest + impute) as a `tf.train.Example`."""
    if record["label_source"] not in LABEL_SOURCES:
        raise ValueError(f"{record['source_id']}: label_source {record['label_source']!r} not in {LABEL_SOURCES}")
    clinical = imputation_forest.encode(record)
    feature = {
        "image/encoded": _bytes(encoded),
        "image/format": _bytes(image_format),
        "image/source_id": _bytes(record["source_id"]),
        "image/filename": _bytes(record["filename"]),
        "image/key/sha256": _bytes(hashlib.sha256(encoded).hexdigest()),
        "image/height": _int(record["height"]),
        "image/width": _int(record["width"]),
        "patient/id": _bytes(record["patientid"]),
        "patient/age": _float(number_or_nan(record["age"])),
        "patient/site": _bytes(record.get("patient_site", "")),  # "": not recorded
        "image/view": _bytes(record["view"]),
        "image/offset_days": _float(number_or_nan(record["offset"])),
        "label/mortality_observed": _int(record["mortality_observed"]),
        "label/mortality": _int(record["mortality"]),
        "label/source": _bytes(record["label_source"]),
        "label/imputed_probability": _float(record["imputed_probability"]),
        **{key: _int(clinical[name]) for key, name in zip(CLINICAL_KEYS, imputation_forest.FEATURE_NAMES)},
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


FEATURE_SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/source_id": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/key/sha256": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "patient/id": tf.io.FixedLenFeature([], tf.string),
    "patient/age": tf.io.FixedLenFeature([], tf.float32),
    "patient/site": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/view": tf.io.FixedLenFeature([], tf.string),
    "image/offset_days": tf.io.FixedLenFeature([], tf.float32),
    "label/mortality_observed": tf.io.FixedLenFeature([], tf.int64),
    "label/mortality": tf.io.FixedLenFeature([], tf.int64),
    "label/source": tf.io.FixedLenFeature([], tf.string),
    "label/imputed_probability": tf.io.FixedLenFeature([], tf.float32),
    **{key: tf.io.FixedLenFeature([], tf.int64, default_value=imputation_forest.NOT_RECORDED)
       for key in CLINICAL_KEYS},
}


def parse_example(serialized: tf.Tensor, keys=None) -> dict[str, tf.Tensor]:
    """All features, or only `keys` (a pass over every shard that needs two of them parses two)."""
    spec = FEATURE_SPEC if keys is None else {key: FEATURE_SPEC[key] for key in keys}
    return tf.io.parse_single_example(serialized, spec)
