import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from components import configs
from tfrecords import writer


def _examples(n):
    for i in range(n):
        yield tf.train.Example(features=tf.train.Features(feature={
            "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
            "pad": tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes(200)])),
        }))


@pytest.fixture
def shards(tmp_path):
    manifest = writer.write_shards(_examples(10), tmp_path, "x", 3, {"note": "test"})
    return tmp_path, manifest


def test_shards_are_named_and_counted(shards):
    directory, manifest = shards
    assert [s["file"] for s in manifest["shards"]] == [f"x-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [s["num_examples"] for s in manifest["shards"]] == [4, 3, 3]
    assert writer.verify(directory)["num_examples"] == 10 and manifest["note"] == "test"
    assert sum(1 for _ in tf.data.TFRecordDataset(writer.shard_paths(directory))) == 10


def test_a_flipped_byte_is_named(shards):
    directory, _ = shards
    path = directory / "x-00001-of-00003.tfrecord"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(writer.CorruptShardError, match="x-00001-of-00003.tfrecord.*sha256"):
        writer.verify(directory)


def test_a_truncated_shard_is_named(shards):
    directory, _ = shards
    path = directory / "x-00002-of-00003.tfrecord"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(writer.CorruptShardError, match="x-00002-of-00003.tfrecord.*truncated"):
        writer.verify(directory)


def test_a_missing_shard_or_manifest_is_named(shards):
    directory, _ = shards
    (directory / "x-00000-of-00003.tfrecord").unlink()
    with pytest.raises(writer.CorruptShardError, match="x-00000-of-00003.tfrecord.*missing"):
        writer.verify(directory)
    (directory / writer.MANIFEST_NAME).unlink()
    with pytest.raises(writer.CorruptShardError, match="manifest missing"):
        writer.verify(directory)


def first_shard_digest(directory: Path) -> str:
    """sha256 of the first of 2 shards of an example whose feature map has 16 entries."""
    example = tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=[i])) for i, name in enumerate("abcdefghijklmnop")}))
    return writer.write_shards([example] * 3, directory, "x", 2, {})["shards"][0]["sha256"]


_WRITE_IN_A_NEW_PROCESS = ("import sys; from pathlib import Path; "
                           "from tests.tfrecords.test_writer import first_shard_digest; "
                           "print(first_shard_digest(Path(sys.argv[1])))")


def test_the_same_examples_give_the_same_bytes_in_every_process(tmp_path):
    """Without deterministic serialization, protobuf writes a map's entries in an order that changes per process."""
    # Without it the order is drawn anew in each process, whatever PYTHONHASHSEED: this one and a new one differ.
    (tmp_path / "here").mkdir(), (tmp_path / "new").mkdir()
    out = subprocess.run([sys.executable, "-c", _WRITE_IN_A_NEW_PROCESS, str(tmp_path / "new")],
                         cwd=configs.REPO_ROOT, capture_output=True, text=True, check=True)
    digests = {first_shard_digest(tmp_path / "here"), out.stdout.split()[-1]}
    assert len(digests) == 1
