"""The one training step for every strategy: tf.function + strategy.run + reduce.

Keras' `model.fit` fails under MultiWorkerMirroredStrategy in TF 2.21 /
Keras 3 ("Attempt to convert a value (PerReplica...)", keras-team/keras#20585),
so training is a custom step that works unchanged under the default strategy,
MirroredStrategy and MultiWorkerMirroredStrategy:

- the dataset comes from `strategy.distribute_datasets_from_function`, each
  input pipeline building its own shard with the per-replica batch;
- `step` is a tf.function calling `strategy.run(replica_step)`; each replica
  computes its share of the weighted mean loss, sum(w*l)_replica / sum(w)_global
  (the global weight sum comes from `replica_context.all_reduce`), and the
  Keras optimizer all-reduces (sums) gradients across replicas before the
  update, so every replica and worker applies the same update;
- losses are `strategy.reduce`d (SUM) and logits/labels `strategy.gather`ed
  for the epoch's training metrics.

Parameter groups (discriminative learning rates) are separate AdamW
optimizers over disjoint variable lists; learning rate and beta_1 are
variables set from Python before each step, so one trace serves the whole
phase, the LR sweep included.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from components.train import aux_targets, input_pipeline


class ParamGroup:
    """An AdamW optimizer over `variables`, lr = multiplier x the schedule's lr."""

    def __init__(self, variables: Sequence[tf.Variable], multiplier: float, weight_decay: float,
                 beta_2: float = 0.99, epsilon: float = 1e-5):
        self.variables = list(variables)
        self.multiplier = multiplier
        self.beta_1 = tf.Variable(0.9, trainable=False, dtype=tf.float32, name="beta_1")
        self.optimizer = keras.optimizers.AdamW(learning_rate=1e-3, beta_1=self.beta_1, beta_2=beta_2,
                                                epsilon=epsilon, weight_decay=weight_decay)
        # fastai: no weight decay on batch-norm parameters and biases.
        self.optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
        self.optimizer.build(self.variables)

    def set(self, lr: float, beta_1: float) -> None:
        self.optimizer.learning_rate.assign(lr * self.multiplier)
        self.beta_1.assign(beta_1)

    def state_variables(self) -> list[tf.Variable]:
        return [v for v in self.optimizer.variables if v is not self.optimizer._learning_rate] + [self.beta_1]

    def reset(self) -> None:
        """Forget moments and step count (a fresh Adam), as after fastai's lr_find."""
        for v in self.optimizer.variables:
            if v is not self.optimizer._learning_rate:
                v.assign(tf.zeros_like(v))


def weighted_bce(labels, logits, weights):
    per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(per_example * weights)


def make_train_step(strategy: tf.distribute.Strategy, model: keras.Model, groups: Sequence[ParamGroup]):
    """A tf.function: distributed batch -> (weighted mean loss, death logits, labels) of the global batch.

    A batch of four (images, labels, weights, auxiliary targets) trains a model with auxiliary heads
    (`aux_targets.training_model`): their masked loss is added; labels < 0 (no survival label) weigh 0."""
    variables = [v for g in groups for v in g.variables]
    sizes = [len(g.variables) for g in groups]

    def replica_step(images, labels, weights, aux=None):
        context = tf.distribute.get_replica_context()
        weight_sum = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(weights))
        if aux is not None:
            aux_known = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                           tf.reduce_sum(tf.cast(aux >= 0, tf.float32), axis=0))
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            death = outputs[0] if aux is not None else outputs
            logits = tf.cast(death[:, 0], tf.float32)
            loss = weighted_bce(tf.maximum(labels, 0.0), logits, weights) / tf.maximum(weight_sum, 1e-12)
            if aux is not None:
                loss += aux_targets.masked_mean_bce(aux, tf.cast(outputs[1], tf.float32), aux_known)
        gradients = tape.gradient(loss, variables)
        start = 0
        for group, size in zip(groups, sizes):
            group.optimizer.apply_gradients(zip(gradients[start:start + size], group.variables))
            start += size
        return loss, logits, labels

    @tf.function
    def step(batch):
        loss, logits, labels = strategy.run(replica_step, args=batch)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.gather(logits, axis=0), strategy.gather(labels, axis=0))

    return step


def predict_logits(predict, images, batch_size: int) -> np.ndarray:
    """Logits of `images` (an array or input_pipeline.StreamedImages), `batch_size` at a time."""
    out = [predict(tf.constant(batch)).numpy()
           for batch in input_pipeline.image_batches(images, input_pipeline.batch_sizes(len(images), batch_size))]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def snapshot(variables: Sequence[tf.Variable]) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def restore(variables: Sequence[tf.Variable], arrays: Sequence[np.ndarray]) -> None:
    if len(variables) != len(arrays):
        raise ValueError(f"checkpoint has {len(arrays)} arrays for {len(variables)} variables")
    for v, a in zip(variables, arrays):
        v.assign(a)
