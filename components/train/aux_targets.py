"""Outcomes short of death as extra supervision: one head per clinical flag beside the death head.

ICU admission, intubation and supplemental oxygen are known for about twice as many images as survival,
but they follow the outcome (a patient on a ventilator is sicker), so they are never model inputs. Here
they are training targets only: each `--aux_targets` flag gets a logit from the layer the death logit
reads, its binary cross-entropy masked where the flag is unknown, and images without a survival label
but with one of the flags train too (their death loss masked). The death head's model is left as it was
(what predicts, validates, saves and serves); the heads live in a training model that shares its layers.

Loss = death's weighted mean (as without heads) + the mean, over the targets known somewhere in the
batch, of each target's mean cross-entropy over the images where it is known. The heads start at zero,
so they add no gradient to the shared layers before they have learnt something themselves.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from common.clinical_flags import FLAG_COLUMNS
from common.errors import PipelineError

HEAD_NAME = "aux_logits"


def parse(text: str) -> tuple[str, ...]:
    """`went_icu,intubation_present` -> ('went_icu', 'intubation_present'); '' -> (); unknown names refused."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in FLAG_COLUMNS]
    if unknown:
        raise PipelineError(f"--aux_targets: {', '.join(unknown)} not among the clinical flags "
                            f"({', '.join(FLAG_COLUMNS)})")
    if len(set(names)) != len(names):
        raise PipelineError(f"--aux_targets names a flag twice: {text}")
    return names


def training_model(model: keras.Model, count: int) -> keras.Model:
    """`model` (one death logit out) with `count` zero-initialised logits from the input of its `logit`
    layer: (death logit, aux logits). Shares every layer, so training it trains `model`."""
    features = model.get_layer("logit").input
    heads = layers.Dense(count, dtype="float32", kernel_initializer="zeros", name=HEAD_NAME)(features)
    return keras.Model(model.inputs, [model.output, heads], name=f"{model.name}_with_aux")


def masked_mean_bce(targets: tf.Tensor, logits: tf.Tensor, global_known: tf.Tensor) -> tf.Tensor:
    """This replica's share of the mean, over the targets known somewhere in the global batch, of each
    target's mean cross-entropy where known (0 when none is).

    `targets` (B, K) float, -1 where unknown; `global_known` (K,) the known count per target over the
    global batch (so replicas' shares sum to the global mean)."""
    known = tf.cast(targets >= 0, tf.float32)
    per_entry = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.maximum(targets, 0.0), logits=logits)
    per_target = tf.reduce_sum(per_entry * known, axis=0) / tf.maximum(global_known, 1.0)
    targets_known = tf.reduce_sum(tf.cast(global_known > 0, tf.float32))
    return tf.reduce_sum(per_target) / tf.maximum(targets_known, 1.0)


def check_known(names: Sequence[str], aux: np.ndarray) -> None:
    """Refuse a target known on no loaded row or of one value only: its head would learn nothing."""
    for name, column in zip(names, np.asarray(aux).T):
        values = set(column[column >= 0].tolist())
        if len(values) < 2:
            what = "known on no image" if not values else "the same on every image where it is known"
            raise PipelineError(f"--aux_targets: {name} is {what}; leave it out")
