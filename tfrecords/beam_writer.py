"""The sharded writer as an Apache Beam pipeline: the local writer's shards, byte for byte, on any runner.

Examples are built where the runner puts the work (on a cluster, image reading and checking spread over
the workers), keyed by the shard the local writer gives their position (`writer.shard_of`), grouped,
put back in input order and written by `writer.write_shard`; the manifest is then written here, as the
local writer writes it. So the shards and manifest do not depend on the runner, and a run on Dataflow,
Flink or Spark can be checked against a local one by sha256. One worker holds one shard's serialized
examples while it writes them; more `num_shards` make each smaller.

On a cluster every worker reads the images and writes the shards by the paths this process sees, so
the data folder and the output folder must be mounted at the same paths on every worker (NFS, a FUSE
mount of a bucket), and the workers must be able to import this repository (BUILD.md, "Beam").
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from tfrecords import writer


def write_shards(
    items: Sequence[Any], make_example: Callable[[Any], tf.train.Example], out_dir: Path, prefix: str,
    num_shards: int, extra: dict[str, Any], runner: str, options: Sequence[str] = (),
) -> dict[str, Any]:
    """Write `make_example(item)` for each item round-robin into `num_shards` files plus the manifest,
    as `writer.write_shards` does; `make_example` must be picklable (e.g. a module-level function or a
    functools.partial of one). `runner` names a Beam runner, `options` are Beam's command-line options."""
    names = [writer.shard_name(prefix, i, num_shards) for i in range(num_shards)]
    paths = [str(Path(out_dir) / name) for name in names]
    with beam.Pipeline(runner=runner, options=PipelineOptions(list(options))) as pipeline:
        keyed = (
            pipeline
            | "Positions" >> beam.Create(list(enumerate(items)))
            | "Spread" >> beam.Reshuffle()  # Create's elements would otherwise stay on one worker
            | "Build" >> beam.Map(_keyed_example, make_example, num_shards)
        )
        # One placeholder per shard, so a shard that no example falls into is still written (empty).
        every_shard = pipeline | "Shards" >> beam.Create([(shard, None) for shard in range(num_shards)])
        _ = (
            (keyed, every_shard)
            | "Merge" >> beam.Flatten()
            | "ByShard" >> beam.GroupByKey()
            | "Write" >> beam.Map(_write_shard, paths)
        )
    counts = collections.Counter(writer.shard_of(position, num_shards) for position in range(len(items)))
    return writer.write_manifest(Path(out_dir), names, [counts[shard] for shard in range(num_shards)], extra)


def _keyed_example(positioned: tuple[int, Any], make_example: Callable[[Any], tf.train.Example], num_shards: int):
    position, item = positioned
    return writer.shard_of(position, num_shards), (position, writer.serialize(make_example(item)))


def _write_shard(grouped: tuple[int, Iterable[tuple[int, bytes] | None]], paths: Sequence[str]) -> None:
    shard, entries = grouped
    in_order = sorted(entry for entry in entries if entry is not None)
    writer.write_shard(Path(paths[shard]), (serialized for _, serialized in in_order))
