"""TFRecords: every usable image, once, with its observed and training labels.

Joins ingest's table with impute's labels, re-reads each image (found by the
data folder's source) through the same safe loader ingest used, and writes sharded `tf.train.Example`s plus a
manifest (counts and sha256 per shard). Variants select rows at read time.
Each image carries its patient's site: that of the patient's first row in ingest's
order (sources/origin.py's rule), blank -> `unknown`, for `--split=site`.
`--tfrecord_writer=beam` writes the same shards, byte for byte, with an Apache Beam
pipeline on `--beam_runner` (tfrecords/beam_writer.py).
"""

from __future__ import annotations

import collections
import functools
import shlex
from pathlib import Path
from typing import Any, Mapping

import tensorflow as tf
import tqdm

from common.errors import PipelineError
from common.labels import NO_LABEL
from components import base, impute, ingest
from images import image_io
from sources import origin
from tfrecords import schema, writer

PREFIX = "covid_cxr"
_OUTCOMES = {"1": "died", "0": "survived", str(NO_LABEL): "unknown"}  # label/mortality's values


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path) -> Mapping[str, Any]:
    rows = ingest.read_examples(inputs["examples"])
    labels = impute.read_labels(inputs["labels"])
    missing = [row["source_id"] for row in rows if row["source_id"] not in labels]
    if missing:
        raise PipelineError(f"tfrecords: {len(missing)} images have no label row, e.g. {missing[0]}")
    source = inputs["data"].source
    paths = {row["source_id"]: source.image_path(row["filename"]) for row in rows}
    records = [{**row, **labels[row["source_id"]], "patient_site": site}
               for row, site in zip(rows, patient_sites(rows))]
    label_counts = collections.Counter(
        f"{r['label_source']}/{_OUTCOMES[r['mortality']]}" for r in records
    )
    extra = {"features": sorted(schema.FEATURE_SPEC), "label_counts": dict(sorted(label_counts.items())),
             **impute.read_refusal(inputs["labels"])}
    if params["writer"] == "beam":
        from tfrecords import beam_writer  # Beam's import (seconds, and its logging) only when asked for

        manifest = beam_writer.write_shards(
            records, functools.partial(_example, paths), out_dir, PREFIX, params["num_shards"], extra,
            params["beam_runner"], shlex.split(params["beam_options"]))
    else:
        examples = (_example(paths, record)
                    for record in tqdm.tqdm(records, desc="tfrecords: writing", unit="img", leave=False))
        manifest = writer.write_shards(examples, out_dir, PREFIX, params["num_shards"], extra)
    return {"num_examples": manifest["num_examples"], "num_shards": len(manifest["shards"]),
            **manifest["label_counts"]}


def patient_sites(rows: list[Mapping[str, str]]) -> list[str]:
    """Each row's patient's site: the site of the patient's first row (a patient in two sites counts in its
    first), blank -> `unknown`."""
    first: dict[str, str] = {}
    for row in rows:
        first.setdefault(row["patientid"], row["site"].strip() or origin.UNKNOWN_SITE)
    return [first[row["patientid"]] for row in rows]


def _example(paths: Mapping[str, Path], record: Mapping[str, Any]) -> tf.train.Example:
    """One row's image, re-read through ingest's safe loader, and its labels as an Example."""
    image = image_io.load_standard_image(paths[record["source_id"]])
    return schema.make_example(image.encoded, image.format, record)


def _summary(artifact: base.Artifact) -> str:
    c = artifact.counts
    by_source = ", ".join(f"{k} {v}" for k, v in c.items() if "/" in k)
    return f"{c['num_examples']} examples in {c['num_shards']} shards ({by_source})"


SPEC = base.ComponentSpec(
    name="tfrecords", run=run, summary=_summary
)
