"""The Beam writer gives the local writer's shards and manifest, byte for byte (tfrecords/beam_writer.py)."""

import json
import os

import pytest
import tensorflow as tf

from common.files import sha256_file
from components import base, configs
from pipeline import local_runner
from pipeline.pipeline import create_pipeline
from tfrecords import beam_writer, writer


def _example(i: int) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
        "pad": tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes(i)])),
    }))


def _files(directory):
    return {path.name: sha256_file(path) for path in sorted(directory.iterdir()) if path.name != base.RECORD_NAME}


@pytest.mark.parametrize("count", [10, 2], ids=["more_examples_than_shards", "an_empty_shard"])
def test_beam_writes_the_local_writers_bytes(tmp_path, count):
    local, beam = tmp_path / "local", tmp_path / "beam"
    local.mkdir(), beam.mkdir()
    expected = writer.write_shards((_example(i) for i in range(count)), local, "x", 3, {"note": "n"})
    manifest = beam_writer.write_shards(list(range(count)), _example, beam, "x", 3, {"note": "n"}, "FnApiRunner")
    assert manifest == expected and _files(beam) == _files(local)
    assert writer.verify(beam)["num_examples"] == count


def test_the_tfrecords_stage_on_beam_writes_the_samples_shards_unchanged(tmp_path, monkeypatch):
    """Beam's worker runs in another process, so the examples are serialized in a process other than the
    local writer's (protobuf's map order differs between processes unless serialization is deterministic)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(configs.REPO_ROOT),
                                                                  os.environ.get("PYTHONPATH")])))

    def run(writer_name, **beam):
        config = configs.PipelineConfig(output_dir=tmp_path / writer_name,
                                        tfrecords=configs.TFRecordConfig(writer=writer_name, **beam))
        return local_runner.run_pipeline(create_pipeline(config), "tfrecords", log=lambda _: None)["tfrecords"]

    local = run("local")
    beam = run("beam", beam_options="--direct_running_mode=multi_processing --direct_num_workers=1")
    assert beam.counts == local.counts and local.counts["num_examples"] == 42
    assert _files(beam.path) == _files(local.path)
    shards = json.loads((local.path / writer.MANIFEST_NAME).read_text())["shards"]
    assert len(shards) == configs.TFRecordConfig().num_shards and all(s["num_examples"] for s in shards)
