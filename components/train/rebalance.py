"""Class rebalancing: the study's class weights, or rejection resampling towards 50/50.

Class weights (the study's formula): w_c = N / (2 * n_c), reciprocal class
counts times N/2, so each class carries half of the loss. The loss is the
weighted mean sum(w_i * l_i) / sum(w_i), as PyTorch's weighted cross-entropy
(fastai) computes it.

Resampling: `tf.data.Dataset.rejection_resample` draws from the (repeated,
shuffled) training stream and rejects examples of the over-represented class
until the stream follows `target` (default 50/50). What was actually fed is
counted per epoch (`FedCounter`) and logged next to the target.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

MODES = ("none", "class_weights", "resample")


def class_weights(labels) -> dict[int, float]:
    """{0: N / (2 n_0), 1: N / (2 n_1)}; a class absent from `labels` gets weight 0."""
    labels = np.asarray(labels).astype(int)
    n = len(labels)
    counts = np.bincount(labels, minlength=2)
    return {c: (n / (2.0 * counts[c]) if counts[c] else 0.0) for c in (0, 1)}


def example_weights(labels, mode: str) -> np.ndarray:
    """Per-example loss weights for `mode` (ones unless mode == 'class_weights', the classes counted over
    the known labels); 0 where the label is unknown (negative: a row that trains auxiliary heads only)."""
    labels = np.asarray(labels).astype(int)
    known = labels >= 0
    weights = np.where(known, 1.0, 0.0).astype(np.float32)
    if mode == "class_weights":
        by_class = class_weights(labels[known])
        weights[known] = [by_class[label] for label in labels[known]]
    return weights


def resample(dataset: tf.data.Dataset, label_of, labels, target=(0.5, 0.5), seed: int = 0) -> tf.data.Dataset:
    """`dataset` (infinite) rejection-resampled so `label_of(element)` follows `target`."""
    counts = np.bincount(np.asarray(labels).astype(int), minlength=2).astype(np.float64)
    initial = (counts / counts.sum()).astype(np.float32)
    if (initial == 0).any():
        return dataset  # one class only: nothing to rebalance
    resampled = dataset.rejection_resample(
        class_func=lambda *element: tf.cast(label_of(*element), tf.int32),
        target_dist=tf.constant(target, tf.float32), initial_dist=tf.constant(initial), seed=seed)
    return resampled.map(lambda _class, element: element)


class FedCounter:
    """Counts the labels of what the training loop was fed."""

    def __init__(self):
        self.counts = np.zeros(2, np.int64)

    def add(self, labels) -> None:
        """Count the known labels (an unknown one, negative, trained auxiliary heads only)."""
        labels = np.asarray(labels).astype(int).ravel()
        self.counts += np.bincount(labels[labels >= 0], minlength=2)[:2]

    @property
    def positive_fraction(self) -> float:
        total = self.counts.sum()
        return float(self.counts[1] / total) if total else float("nan")
