"""The data stages end to end on the embedded sample: caching, invalidation, kill and resume."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from common.labels import NO_LABEL
from components import base, ingest, impute
from components import configs
from pipeline import local_runner
from pipeline.pipeline import create_pipeline
from images import image_io
from tfrecords import schema, writer


def _run(data_dir, output_dir, stop_after="tfrecords", **overrides):
    config = configs.PipelineConfig(data_dir=data_dir, output_dir=output_dir, **overrides)
    return local_runner.run_pipeline(create_pipeline(config), stop_after, log=lambda _: None)


def _content(artifact: base.Artifact) -> dict[str, str]:
    """sha256 of every file but the record (which holds paths and timings)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(artifact.path.iterdir()) if p.name != base.RECORD_NAME}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("out")
    return output, _run(configs.SAMPLE_DATA_DIR, output)


def test_sample_counts(sample_run):
    _, artifacts = sample_run
    counts = artifacts["ingest"].counts
    assert counts["rows"] == 45 and counts["usable"] == 42
    assert counts["usable_labelled"]["died"] >= 6 and counts["usable_labelled"]["survived"] >= 6
    assert counts["usable_labelled"]["count"] < counts["usable"]  # some rows carry no label
    assert artifacts["tfrecords"].counts["num_examples"] == 42


def test_tfrecords_round_trip_bytes_and_labels(sample_run):
    _, artifacts = sample_run
    directory = artifacts["tfrecords"].path
    writer.verify(directory)
    examples = {row["source_id"]: row for row in ingest.read_examples(artifacts["ingest"])}
    labels = impute.read_labels(artifacts["impute"])
    seen = set()
    for serialized in tf.data.TFRecordDataset(writer.shard_paths(directory)):
        parsed = schema.parse_example(serialized)
        source_id = parsed["image/source_id"].numpy().decode()
        seen.add(source_id)
        expected = image_io.load_standard_image(configs.SAMPLE_DATA_DIR / "images" / examples[source_id]["filename"])
        assert parsed["image/encoded"].numpy() == expected.encoded
        label = labels[source_id]
        assert int(parsed["label/mortality"]) == int(label["mortality"])
        assert int(parsed["label/mortality_observed"]) == int(examples[source_id]["mortality_observed"])
        assert parsed["label/source"].numpy().decode() == label["label_source"]
        assert parsed["patient/id"].numpy().decode() == examples[source_id]["patientid"]
        if label["label_source"] == "imputed":
            assert int(parsed["label/mortality_observed"]) == NO_LABEL
    assert seen == set(examples)


# sha256 of every output of the data stages on the embedded sample, recorded with the code before the data
# sources (sources/) came in (commit 8f4711e, the pinned requirements.txt): reading the upstream collection
# through sources.upstream must not change one byte. The TFRecords were pinned anew, deliberately, when their
# examples gained the imputation forest's features (`clinical/*`, for the forest fitted inside each training
# fold); ingest's and impute's outputs kept their bytes through that change. Ingest's `examples.csv` and the
# TFRecords were pinned anew, deliberately, when upstream rows gained a `site` column (sources/origin.py's rule on
# `location`) and the examples their patient's site (`patient/site`, for --split=site); the ingest report and
# impute's outputs kept their bytes.
PINNED_UPSTREAM_OUTPUTS = {
    "ingest": {
        "examples.csv": "c0ae2747941b35a6d36daf2bdcf556e73973293b09e21b4c436338686743fff0",
        "ingest_report.json": "eb7f7e260d6ae2e875a4f4664f9033f5fd5e41ce7e4f18aca612e8ef207dad51",
    },
    "impute": {
        "imputation_report.json": "22198836eb865619c2cb547d1e6b822da63c6c95ba5587b9b1a5fb1dd403b1a6",
        "labels.csv": "fcf8fd3f8e6a96d039e1994c1328c01ce664563da6804df5d2988f857551c1fe",
    },
    "tfrecords": {
        "covid_cxr-00000-of-00004.tfrecord": "f16c23d3f8f36aedf24a1729c88a105140d78992ffd910f2e530e5b5f5dab3ed",
        "covid_cxr-00001-of-00004.tfrecord": "25144b299c00f94ec3be5a1bd823c6c320a19b6f148ccead188cc1e84645cc78",
        "covid_cxr-00002-of-00004.tfrecord": "aec7dd95c24c5b065a7166b1f52bc497691d9097a0fdd9d6d8ed7eeefa17eb49",
        "covid_cxr-00003-of-00004.tfrecord": "5598d37aa9f34d9d17ec275e4e3087cc665347bff19493acd8389e9d628f73d8",
        "manifest.json": "926a2e3ca573a2b654975acf46a017bea9d527e4c35fe51b63d2985c55ce5dc8",
    },
}


def test_the_upstream_outputs_are_the_pinned_bytes(sample_run):
    _, artifacts = sample_run
    assert {stage: _content(artifacts[stage]) for stage in PINNED_UPSTREAM_OUTPUTS} == \
        PINNED_UPSTREAM_OUTPUTS


def test_second_run_is_cached_and_a_changed_parameter_reruns_only_what_follows(sample_run):
    output, first = sample_run
    again = _run(configs.SAMPLE_DATA_DIR, output)
    assert {k: a.path for k, a in again.items()} == {k: a.path for k, a in first.items()}
    changed = _run(configs.SAMPLE_DATA_DIR, output, impute=configs.ImputeConfig(seed=1))
    assert changed["ingest"].path == first["ingest"].path
    assert changed["impute"].path != first["impute"].path
    assert changed["tfrecords"].path != first["tfrecords"].path


def test_max_offset_days_reaches_ingest_and_narrows_every_later_stage(sample_run):
    output, everything = sample_run
    early = _run(configs.SAMPLE_DATA_DIR, output, ingest=configs.IngestConfig(max_offset_days=7))
    kept = [row for row in ingest.read_examples(everything["ingest"]) if ingest.taken_within(row["offset"], 7)]
    assert 0 < len(kept) < everything["ingest"].counts["usable"]
    assert early["ingest"].counts["usable"] == early["tfrecords"].counts["num_examples"] == len(kept)
    assert early["ingest"].path != everything["ingest"].path


def test_an_edited_image_reruns_ingest(sample_run, copy_sample, tmp_path):
    _, first = sample_run
    data = copy_sample()
    output = tmp_path / "out"
    before = _run(data, output, stop_after="ingest")
    assert before["ingest"].fingerprint == first["ingest"].fingerprint  # same content, same key
    image = sorted((data / "images").iterdir())[0]
    image.write_bytes(image.read_bytes()[:-10])
    after = _run(data, output, stop_after="ingest")
    assert after["ingest"].path != before["ingest"].path


def _wait_for_tmp(output: Path, component: str, process, timeout=900.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        folder = output / component
        if folder.is_dir() and any(p.name.startswith(".tmp-") for p in folder.iterdir()):
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before {component} started writing")
        time.sleep(0.002)
    pytest.fail(f"{component} never started")


@pytest.mark.parametrize("component", ["ingest", "tfrecords"])
def test_sigkill_during_a_component_then_rerun_equals_an_uninterrupted_run(sample_run, tmp_path, component):
    _, uninterrupted = sample_run
    output = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", f"--output_dir={output}"],
        cwd=configs.REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_for_tmp(output, component, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not any((p / base.RECORD_NAME).is_file() for p in (output / component).iterdir()
                   if not p.name.startswith(".tmp-"))
    rerun = _run(configs.SAMPLE_DATA_DIR, output)
    for stage in ("ingest", "impute", "tfrecords"):
        assert rerun[stage].fingerprint == uninterrupted[stage].fingerprint
        assert _content(rerun[stage]) == _content(uninterrupted[stage])
    assert not [p for p in (output / component).iterdir() if p.name.startswith(".tmp-")]
