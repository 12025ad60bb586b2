"""TFRecords -> decoded 224 px images (in memory, or streamed past a memory budget) -> tf.data streams.

The shards are verified against their manifest first (a corrupted shard stops
training before it starts). When the selected images fit `memory_budget_gb`
as float32, every one is decoded once through the one shared preprocessing
(`images.preprocessing.preprocess`, parallel map) and kept in memory: decoding
a full-size X-ray costs far more than a training step's share, so caching the
224 px result keeps the input pipeline off the critical path. Past the budget
the images are `StreamedImages`: read from the shards (in their order) and
decoded on every pass, so memory no longer grows with the data set.

A training epoch is a pure function of (seed, fold, phase, epoch): the index
stream is shuffled with that seed, optionally rejection-resampled, sharded per
input pipeline (multi-worker), batched (drop_remainder, as fastai's training
loader), then gathered and augmented batch-wise in a parallel map whose random
numbers derive from (epoch seed, batch index). One pipeline serves all the
epochs of a phase; a resumed phase builds it from its next epoch, so it feeds
exactly the same batches, with no iterator state to save. Streamed rows are
shuffled in a buffer of `min(rows, shuffle_buffer)`: while that holds every
row, TensorFlow's shuffle permutes positions exactly as it permutes the
in-memory indices, so streaming feeds the same batches; a smaller buffer (a
data set past it) gives other, equally seeded, batches.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from common import imputation_forest
from common.labels import NO_LABEL
from components.train import rebalance
from images import preprocessing
from tfrecords import schema, writer

LABEL_SETS = {"observed": ("observed",), "observed+imputed": ("observed", "imputed")}


class StreamedImages:
    """Some rows' images, read from the shards and decoded on every pass; nothing is held in memory."""

    def __init__(self, tfrecords_dir: Path, source_ids: np.ndarray, image_size: int, shuffle_buffer: int):
        self.tfrecords_dir, self.source_ids = Path(tfrecords_dir), np.asarray(source_ids)
        self.image_size, self.shuffle_buffer = image_size, shuffle_buffer

    def __len__(self):
        return len(self.source_ids)

    def __getitem__(self, indices) -> "StreamedImages":
        return StreamedImages(self.tfrecords_dir, self.source_ids[indices], self.image_size, self.shuffle_buffer)

    def encoded_rows(self) -> tf.data.Dataset:
        """(position among these rows, encoded image) for each row, in shard order (= the rows' order)."""
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.source_ids.astype(str)), tf.range(len(self), dtype=tf.int64)), default_value=-1)
        records = tf.data.TFRecordDataset(writer.shard_paths(self.tfrecords_dir)).map(
            lambda r: schema.parse_example(r, ("image/source_id", "image/encoded")),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return (records.map(lambda r: (table.lookup(r["image/source_id"]), r["image/encoded"]))
                .filter(lambda position, _: position >= 0))

    def decode(self, encoded: tf.Tensor) -> tf.Tensor:
        """A batch of encoded images -> (B, S, S, 3) float32, through the one shared preprocessing."""
        return tf.map_fn(lambda e: preprocessing.preprocess(e, self.image_size), encoded,
                         fn_output_signature=tf.TensorSpec((self.image_size, self.image_size, 3), tf.float32))

    def batches(self, sizes: Sequence[int]) -> Iterator[np.ndarray]:
        if not sizes:
            return
        decoded = (self.encoded_rows().batch(32).map(lambda _, e: self.decode(e), num_parallel_calls=tf.data.AUTOTUNE,
                                                     deterministic=True).unbatch().batch(max(sizes)))
        pending = np.zeros((0, self.image_size, self.image_size, 3), np.float32)
        stream = iter(decoded)
        for size in sizes:
            while len(pending) < size:
                pending = np.concatenate([pending, next(stream).numpy()])
            yield pending[:size]
            pending = pending[size:]


def image_batches(images: "np.ndarray | StreamedImages", sizes: Sequence[int]) -> Iterator[np.ndarray]:
    """Consecutive batches of `sizes` images, in row order, from memory or from the shards."""
    if isinstance(images, StreamedImages):
        yield from images.batches(sizes)
        return
    start = 0
    for size in sizes:
        yield images[start:start + size]
        start += size


def batch_sizes(count: int, batch_size: int) -> list[int]:
    """Batches of `batch_size`, the last one smaller: how predictions walk the rows."""
    return [min(batch_size, count - start) for start in range(0, count, batch_size)]


@dataclasses.dataclass
class Examples:
    """The selected rows, images decoded (or streamed), in TFRecord order."""

    images: "np.ndarray | StreamedImages"  # (N, S, S, 3) float32 in [0, 255]
    labels: np.ndarray          # (N,) int: the label the variant trains on
    label_sources: np.ndarray   # (N,) 'observed' | 'imputed'
    source_ids: np.ndarray
    patients: np.ndarray
    sha256: np.ndarray
    clinical: np.ndarray        # (N, 5) int: the imputation forest's features (schema.CLINICAL_KEYS), -1 = unknown
    sites: np.ndarray           # (N,) the patient's site ('' in shards written before sites)
    aux: np.ndarray             # (N, K) int: the --aux_targets flags (1/0, -1 = unknown); K = 0 without them

    def __len__(self):
        return len(self.labels)

    def subset(self, indices) -> "Examples":
        return Examples(*(getattr(self, f.name)[indices] for f in dataclasses.fields(self)))


def load_examples(tfrecords_dir: Path, label_set: str, image_size: int, memory_budget_gb: float = float("inf"),
                  shuffle_buffer: int = 10_000, aux_targets: Sequence[str] = ()) -> Examples:
    """Verify the shards, keep the rows of `label_set` (and, with `aux_targets`, the rows where one of those
    clinical flags is known, their survival label set to NO_LABEL when outside `label_set`); decode their
    images once if they fit `memory_budget_gb` as float32, else stream them (`StreamedImages`)."""
    writer.verify(tfrecords_dir)
    sources = tf.constant(LABEL_SETS[label_set])
    aux_keys = [schema.CLINICAL_KEYS[imputation_forest.FEATURE_NAMES.index(name)] for name in aux_targets]
    keys = ("label/mortality", "label/source", "image/source_id", "patient/id", "image/key/sha256", "patient/site",
            *schema.CLINICAL_KEYS)

    def selected(r):
        labelled = tf.reduce_any(tf.equal(r["label/source"], sources))
        return tf.reduce_any(tf.stack([labelled, *(r[key] >= 0 for key in aux_keys)]))

    records = (tf.data.TFRecordDataset(writer.shard_paths(tfrecords_dir))
               .map(lambda r: schema.parse_example(r, keys), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .filter(selected))
    meta: dict[str, list] = {}
    for row in records.batch(256):
        for key, value in row.items():
            meta.setdefault(key, []).append(value.numpy())
    if not meta:
        raise ValueError(f"{tfrecords_dir}: no rows with label source in {LABEL_SETS[label_set]}")
    col = {k: np.concatenate(v) for k, v in meta.items()}
    text = lambda key: np.array([v.decode() for v in col[key]])  # noqa: E731
    source_ids = text("image/source_id")
    images = StreamedImages(tfrecords_dir, source_ids, image_size, shuffle_buffer)
    if len(source_ids) * image_size * image_size * 3 * 4 <= memory_budget_gb * 2 ** 30:
        images = np.concatenate(list(images.batches(batch_sizes(len(images), 256))))
    label_sources = text("label/source")
    labels = np.where(np.isin(label_sources, LABEL_SETS[label_set]), col["label/mortality"], NO_LABEL)
    return Examples(images=images, labels=labels.astype(np.int64),
                    label_sources=label_sources, source_ids=source_ids,
                    patients=text("patient/id"), sha256=text("image/key/sha256"),
                    clinical=np.stack([col[key] for key in schema.CLINICAL_KEYS], axis=1).astype(np.int64),
                    sites=text("patient/site"),
                    aux=np.stack([col[key] for key in aux_keys], axis=1).astype(np.int64) if aux_keys
                    else np.zeros((len(source_ids), 0), np.int64))


def train_dataset(images: "tf.Tensor | StreamedImages", labels: np.ndarray, weights: np.ndarray, *,
                  global_batch: int, steps: int,
                  seeds: Sequence[int], augment_fn, resample: bool,
                  input_context: tf.distribute.InputContext | None = None, target=(0.5, 0.5),
                  aux: np.ndarray | None = None) -> tf.data.Dataset:
    """`steps` batches of (images, labels float32, weights float32[, aux targets (B, K) float32 when `aux`
    is given]) per epoch seed, epoch after epoch.

    One pipeline for a whole phase: each epoch's index stream is built from its own seed (a Python int,
    as `shuffle` and `rejection_resample` need) and the streams are concatenated before the one gather +
    augment map, so the next epoch's first batch is prepared while this epoch's last step, validation and
    checkpoint run. The batches are those of separate per-epoch pipelines with the same seeds."""
    n = len(labels)
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    batch = input_context.get_per_replica_batch_size(global_batch) if input_context else global_batch
    per_pipeline = steps * global_batch // num_pipelines
    labels_t = tf.constant(labels, tf.int64)
    weights_t = tf.constant(weights, tf.float32)
    aux_t = None if aux is None else tf.constant(aux, tf.float32)

    streamed = isinstance(images, StreamedImages)
    # Each row as (position, payload): the payload is its encoded image when streamed, else the position.
    rows = images.encoded_rows() if streamed else tf.data.Dataset.range(n).map(lambda i: (i, i))
    buffer = min(n, images.shuffle_buffer) if streamed else n

    def epoch_indices(seed: int) -> tf.data.Dataset:
        indices = rows.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        if resample:
            indices = rebalance.resample(indices, lambda i, _: tf.gather(labels_t, i), labels, target, seed=seed)
        if num_pipelines > 1:
            indices = indices.shard(num_pipelines, pipeline_id)
        batches = indices.take(per_pipeline).batch(batch, drop_remainder=True).enumerate()
        return batches.map(lambda batch_index, row: (tf.constant(seed, tf.int64), batch_index, *row))

    if not seeds:
        raise ValueError("train_dataset needs at least one epoch seed")
    indices = functools.reduce(tf.data.Dataset.concatenate, map(epoch_indices, seeds))

    def load(seed, batch_index, index, payload):
        batch_seed = tf.stack([seed, batch_index + 1_000_000 * pipeline_id])
        pixels = images.decode(payload) if streamed else tf.gather(images, index)
        picked = augment_fn(pixels, batch_seed)
        batch = (picked, tf.cast(tf.gather(labels_t, index), tf.float32), tf.gather(weights_t, index))
        return batch if aux_t is None else (*batch, tf.gather(aux_t, index))

    return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


def steps_per_epoch(num_examples: int, global_batch: int) -> int:
    """Full batches per epoch (fastai drops the last partial training batch); at least one."""
    return max(1, num_examples // global_batch)
