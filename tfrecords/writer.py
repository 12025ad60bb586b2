"""Sharded TFRecord writing and the manifest that proves the shards are intact.

Shards are named `<prefix>-00000-of-000NN.tfrecord` (Model Garden's scheme).
`manifest.json` lists each shard's example count, size and sha256; `verify`
recomputes them and names the first shard that differs, so a corrupted or
truncated file stops training before it starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import tensorflow as tf

from common.errors import PipelineError
from common.files import sha256_file, write_json_atomic

MANIFEST_NAME = "manifest.json"


class CorruptShardError(PipelineError):
    """A shard does not match its manifest."""


def shard_name(prefix: str, index: int, num_shards: int) -> str:
    return f"{prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_of(position: int, num_shards: int) -> int:
    """Round-robin: the shard of the example at `position` in input order (the Beam writer uses it too)."""
    return position % num_shards


def serialize(example: tf.train.Example) -> bytes:
    """Map entries in sorted order: protobuf's default order varies from one process to the next, so the
    same examples would give shards with other bytes (and sha256s) on every run."""
    return example.SerializeToString(deterministic=True)


def write_shard(path: Path, serialized: Iterable[bytes]) -> None:
    """One shard file holding `serialized` records in order."""
    with tf.io.TFRecordWriter(str(path)) as shard:
        for record in serialized:
            shard.write(record)


def write_shards(
    examples: Iterable[tf.train.Example], out_dir: Path, prefix: str, num_shards: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """Write examples round-robin into `num_shards` files plus the manifest."""
    names = [shard_name(prefix, i, num_shards) for i in range(num_shards)]
    counts = [0] * num_shards
    writers = [tf.io.TFRecordWriter(str(out_dir / name)) for name in names]
    try:
        for position, example in enumerate(examples):
            shard = shard_of(position, num_shards)
            writers[shard].write(serialize(example))
            counts[shard] += 1
    finally:
        for writer in writers:
            writer.close()
    return write_manifest(out_dir, names, counts, extra)


def write_manifest(out_dir: Path, names: list[str], counts: list[int], extra: dict[str, Any]) -> dict[str, Any]:
    """`manifest.json` for shards already in `out_dir`: each one's count, size and sha256, then `extra`."""
    manifest = {
        "shards": [
            {"file": name, "num_examples": count, "bytes": (out_dir / name).stat().st_size,
             "sha256": sha256_file(out_dir / name)}
            for name, count in zip(names, counts)
        ],
        "num_examples": sum(counts),
        **extra,
    }
    write_json_atomic(out_dir / MANIFEST_NAME, manifest)
    return manifest


def load_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise CorruptShardError(f"{path}: manifest missing; re-run the tfrecords stage")
    return json.loads(path.read_text())


def verify(directory: Path) -> dict[str, Any]:
    """Check every shard's size, sha256 and record count against the manifest."""
    manifest = load_manifest(directory)
    for shard in manifest["shards"]:
        path = Path(directory) / shard["file"]
        if not path.is_file():
            raise CorruptShardError(f"{path}: shard listed in the manifest is missing")
        size = path.stat().st_size
        if size != shard["bytes"]:
            raise CorruptShardError(f"{path}: {size} bytes, manifest says {shard['bytes']} (truncated or altered)")
        if sha256_file(path) != shard["sha256"]:
            raise CorruptShardError(f"{path}: sha256 differs from the manifest (corrupted)")
        try:
            count = sum(1 for _ in tf.data.TFRecordDataset(str(path)))
        except tf.errors.DataLossError as error:
            raise CorruptShardError(f"{path}: unreadable record ({error.message.splitlines()[0]})") from None
        if count != shard["num_examples"]:
            raise CorruptShardError(f"{path}: {count} examples, manifest says {shard['num_examples']}")
    return manifest


def shard_paths(directory: Path) -> list[str]:
    return [str(Path(directory) / shard["file"]) for shard in load_manifest(directory)["shards"]]
