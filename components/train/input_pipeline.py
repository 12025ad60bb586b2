"""TFRecords -> decoded 224 px images in memory -> per-epoch tf.data streams.

The shards are verified against their manifest first (a corrupted shard stops
training before it starts). Every selected image is decoded once through the
one shared preprocessing (`images.preprocessing.preprocess`, parallel map)
and kept in memory as float32: at most a few hundred images, and decoding a
full-size X-ray costs far more than a training step's share, so caching the
224 px result is what keeps the input pipeline off the critical path.

A training epoch is a pure function of (seed, fold, phase, epoch): the index
stream is shuffled with that seed, optionally rejection-resampled, sharded per
input pipeline (multi-worker), batched (drop_remainder, as fastai's training
loader), then gathered and augmented batch-wise in a parallel map whose random
numbers derive from (epoch seed, batch index). One pipeline serves all the
epochs of a phase; a resumed phase builds it from its next epoch, so it feeds
exactly the same batches, with no iterator state to save.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from components.train import rebalance
from images import preprocessing
from tfrecords import schema, writer

LABEL_SETS = {"observed": ("observed",), "observed+imputed": ("observed", "imputed")}


@dataclasses.dataclass
class Examples:
    """The selected rows, images decoded, in TFRecord order."""

    images: np.ndarray          # (N, S, S, 3) float32 in [0, 255]
    labels: np.ndarray          # (N,) int: the label the variant trains on
    label_sources: np.ndarray   # (N,) 'observed' | 'imputed'
    source_ids: np.ndarray
    patients: np.ndarray
    sha256: np.ndarray

    def __len__(self):
        return len(self.labels)

    def subset(self, indices) -> "Examples":
        return Examples(*(getattr(self, f.name)[indices] for f in dataclasses.fields(self)))


def load_examples(tfrecords_dir: Path, label_set: str, image_size: int) -> Examples:
    """Verify the shards, keep the rows of `label_set`, decode their images once."""
    writer.verify(tfrecords_dir)
    sources = tf.constant(LABEL_SETS[label_set])
    records = (tf.data.TFRecordDataset(writer.shard_paths(tfrecords_dir))
               .map(schema.parse_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .filter(lambda r: tf.reduce_any(tf.equal(r["label/source"], sources))))

    def decode(record):
        meta = {k: record[k] for k in ("label/mortality", "label/source", "image/source_id", "patient/id",
                                       "image/key/sha256")}
        return preprocessing.preprocess(record["image/encoded"], image_size), meta

    images, meta = [], {}
    for image, row in records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(32):
        images.append(image.numpy())
        for key, value in row.items():
            meta.setdefault(key, []).append(value.numpy())
    if not images:
        raise ValueError(f"{tfrecords_dir}: no rows with label source in {LABEL_SETS[label_set]}")
    col = {k: np.concatenate(v) for k, v in meta.items()}
    text = lambda key: np.array([v.decode() for v in col[key]])  # noqa: E731
    return Examples(images=np.concatenate(images).astype(np.float32), labels=col["label/mortality"].astype(np.int64),
                    label_sources=text("label/source"), source_ids=text("image/source_id"),
                    patients=text("patient/id"), sha256=text("image/key/sha256"))


def epoch_seed(seed: int, fold: int, phase: str, epoch: int) -> int:
    """A 31-bit seed for one epoch (phase 'frozen', 'unfrozen', 'lr_frozen', ...)."""
    digest = np.random.SeedSequence([seed, fold, sum(map(ord, phase)) * 1009 + len(phase), epoch])
    return int(digest.generate_state(1)[0] & 0x7FFFFFFF)


def train_dataset(images: tf.Tensor, labels: np.ndarray, weights: np.ndarray, *, global_batch: int, steps: int,
                  seeds: Sequence[int], augment_fn, resample: bool,
                  input_context: tf.distribute.InputContext | None = None, target=(0.5, 0.5)) -> tf.data.Dataset:
    """`steps` batches of (images, labels float32, weights float32) per epoch seed, epoch after epoch.

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

    def epoch_indices(seed: int) -> tf.data.Dataset:
        indices = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
        if resample:
            indices = rebalance.resample(indices, lambda i: tf.gather(labels_t, i), labels, target, seed=seed)
        if num_pipelines > 1:
            indices = indices.shard(num_pipelines, pipeline_id)
        batches = indices.take(per_pipeline).batch(batch, drop_remainder=True).enumerate()
        return batches.map(lambda batch_index, index: (tf.constant(seed, tf.int64), batch_index, index))

    if not seeds:
        raise ValueError("train_dataset needs at least one epoch seed")
    indices = functools.reduce(tf.data.Dataset.concatenate, map(epoch_indices, seeds))

    def load(seed, batch_index, index):
        batch_seed = tf.stack([seed, batch_index + 1_000_000 * pipeline_id])
        picked = augment_fn(tf.gather(images, index), batch_seed)
        return picked, tf.cast(tf.gather(labels_t, index), tf.float32), tf.gather(weights_t, index)

    return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


def steps_per_epoch(num_examples: int, global_batch: int) -> int:
    """Full batches per epoch (fastai drops the last partial training batch); at least one."""
    return max(1, num_examples // global_batch)
