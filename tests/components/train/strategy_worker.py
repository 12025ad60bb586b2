"""A subprocess for the strategy tests: train a tiny model a few steps with the one training step.

usage: python strategy_worker.py OUT_DIR MODE:MODEL [MODE:MODEL ...]   (writes OUT_DIR/MODE-MODEL.npz for each)
MODE: default | mirrored | multi_worker (reads TF_CONFIG; alone in its process); MODEL: plain | bn (Keras'
batch norm) | fused (the project's models.fused_batch_norm, as ResNet-18 uses it) | aux (plain with two
auxiliary heads, `--aux_targets`: survival and targets unknown on some rows).
Several runs share one process (one TensorFlow start); each builds its model from the same seed.
Model and data are fixed by seeds. Without batch norm and augmentation every
mode computes the same global-batch update; with them, replicas see their own
batch statistics and augmentation seeds, so only workers of one run agree.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

out_dir, runs = Path(sys.argv[1]), [spec.split(":") for spec in sys.argv[2:]]
modes = {mode for mode, _ in runs}
if "multi_worker" in modes and len(runs) > 1:
    sys.exit("strategy_worker.py: a multi_worker run must be alone in its process")
if "mirrored" in modes:  # two logical CPUs, before TensorFlow starts; the default strategy keeps to the first
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def make_strategy(mode):
    if mode == "mirrored":
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if mode == "multi_worker":
        from components.train import strategy as strat
        return strat.get_strategy("multi_worker")
    return tf.distribute.get_strategy()


strategies = {mode: make_strategy(mode) for mode in modes}  # multi_worker must exist before any op runs

import keras  # noqa: E402

from components import configs  # noqa: E402
from components.train import aux_targets, batch_norm_stats, input_pipeline, loop  # noqa: E402
from images import augment
from models.fused_batch_norm import FusedBatchNormalization  # noqa: E402

tf.config.experimental.enable_op_determinism()


def train(strategy, kind):
    """Three steps of the tiny model: what the tests compare, as arrays."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        layers = ([keras.layers.Rescaling(1 / 255.0),
                   # A bias before batch norm gets only rounding noise as gradient, which Adam would blow up.
                   keras.layers.Conv2D(4, 3, use_bias=kind in ("plain", "aux"))]
                  + ({"bn": [keras.layers.BatchNormalization()], "fused": [FusedBatchNormalization()]}.get(kind, []))
                  + [keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1, name="logit")])
        if kind == "aux":  # a functional classifier, as the project's, whose death logit the heads sit beside
            x = inputs = keras.Input((16, 16, 3))
            for layer in layers:
                x = layer(x)
            model = aux_targets.training_model(keras.Model(inputs, x), 2)
        else:
            model = keras.Sequential([keras.Input((16, 16, 3)), *layers])
        group = loop.ParamGroup(model.trainable_variables, 1.0, weight_decay=0.01)
    step = loop.make_train_step(strategy, model, [group])
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (96, 16, 16, 3)).astype(np.float32))
    labels = (np.arange(96) % 3 == 0).astype(np.int64)
    weights = np.where(labels == 1, 1.5, 0.75).astype(np.float32)
    aux = None
    if kind == "aux":  # every fifth row without a survival label; targets known on some rows only
        labels[::5], weights[::5] = -1, 0.0
        aux = np.stack([np.where(np.arange(96) % 4 == 0, -1, np.arange(96) % 2),
                        np.where(np.arange(96) % 3 == 1, np.arange(96) % 5 == 0, -1)], axis=1).astype(np.int64)
    fn = augment.make_dataset_augment_fn(configs.AugmentConfig(method="fused" if kind in ("bn", "fused") else "none"), 0)
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: input_pipeline.train_dataset(images, labels, weights, global_batch=64, steps=3, seeds=[1],
                                                 augment_fn=fn, resample=False, input_context=ctx, aux=aux))
    losses, fed = [], 0
    for batch in dataset:
        group.set(1e-2, 0.9)
        loss, logits, batch_labels = step(batch)
        losses.append(float(loss))
        fed += int(batch_labels.shape[0])
    moving = {f"bn{i}": v.numpy() for i, v in enumerate(model.non_trainable_variables)}
    if kind in ("bn", "fused"):  # then each worker recomputes them from all the images
        batch_norm_stats.recompute(model, images.numpy(), 64)
        moving.update({f"recomputed_bn{i}": v.numpy() for i, v in enumerate(model.non_trainable_variables)})
    return dict(losses=np.array(losses), fed=fed, replicas=strategy.num_replicas_in_sync,
                **{f"w{i}": v.numpy() for i, v in enumerate(model.trainable_variables)}, **moving)


for mode, kind in runs:
    np.savez(out_dir / f"{mode}-{kind}.npz", **train(strategies[mode], kind))
