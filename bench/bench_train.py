"""Training speed: model-only peak, LR-sweep length, and the phases of a finished run.

1. `--mode=peak`: images/s of one training step on an in-memory batch
   (ResNet-18 224 px, batch 64), body frozen and unfrozen, fp32 and bf16:
   the ceiling any input pipeline can reach on this machine.
2. `--mode=sweep`: fold 0 of a variant on real data, the frozen-body LR
   finder with fastai's 100 steps and with shorter sweeps: the learning rate
   each suggests and its cost (the lever behind `--lr_finder_steps`).
3. `--mode=summary --summary=<train_summary.json>`: seconds per phase (LR
   sweeps, frozen, unfrozen, validation) of a finished run, its training
   images/s and the ratio to the bf16 model-only peak measured in the same
   process.

usage: python -m bench.bench_train --mode=peak|sweep|summary [--tfrecords=DIR] [--summary=FILE]
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import models  # noqa: E402
from components.train import (augment, fold as fold_lib, input_pipeline, loop, lr_finder, rebalance,  # noqa: E402
                              splits, strategy as strat)

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "peak", ["peak", "sweep", "summary"], "What to measure.")
flags.DEFINE_string("tfrecords", None, "tfrecords artifact folder (sweep mode).")
flags.DEFINE_string("summary", None, "train_summary.json of a finished run (summary mode).")
flags.DEFINE_string("weights", None, "Pretrained body for sweep mode.")
flags.DEFINE_list("sweep_steps", ["100", "30", "20"], "LR sweep lengths to compare.")
flags.DEFINE_list("precisions", ["fp32", "bf16"], "Precisions for peak mode.")
flags.DEFINE_integer("steps", 4, "Timed steps per peak measurement.")


def peak(precision, frozen, steps=None, batch=64, size=224):
    steps = steps or FLAGS.steps
    strategy = strat.get_strategy("auto")
    with strategy.scope(), strat.precision_policy(precision):
        model, report = models.build_classifier("resnet18", size, weights=FLAGS.weights)
    models.set_body_trainable(model, not frozen, always_trainable=report.fresh_layers if report else ())
    with strategy.scope():
        group = loop.ParamGroup(model.trainable_variables, 1.0, 0.01)
    group.set(1e-5, 0.9)
    step = loop.make_train_step(strategy, model, [group])
    batch_data = (tf.random.uniform((batch, size, size, 3), 0, 255), tf.cast(tf.range(batch) % 2, tf.float32),
                  tf.ones(batch))
    dist = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch_data))))
    for _ in range(2):
        float(step(dist)[0])
    start = time.perf_counter()
    for _ in range(steps):
        float(step(dist)[0])
    train_rate = steps * batch / (time.perf_counter() - start)
    predict = loop.make_predict(model)
    predict(batch_data[0])
    start = time.perf_counter()
    predict(batch_data[0]).numpy()
    return train_rate, batch / (time.perf_counter() - start)


def mode_peak():
    for precision in FLAGS.precisions:
        for frozen in (True, False):
            train_rate, infer = peak(precision, frozen)
            print(f"peak {precision:4s} body {'frozen  ' if frozen else 'unfrozen'}: train {train_rate:6.1f} img/s, "
                  f"inference {infer:6.1f} img/s")


def mode_sweep():
    p = fold_lib.TrainParams(weights=FLAGS.weights, precision="auto")
    precision = strat.resolve_precision(p.precision)
    examples = input_pipeline.load_examples(FLAGS.tfrecords, p.labels, p.image_size)
    train_idx, _ = splits.make_folds(examples.labels, examples.patients, p.split, p.folds, p.seed)[0]
    train = examples.subset(train_idx)
    session = fold_lib.Session(p, strat.get_strategy("auto"), precision)
    session.reset(1)
    session.set_phase("frozen")
    groups, step = session.groups["frozen"], session.steps["frozen"]
    images = tf.constant(train.images)
    weights = rebalance.example_weights(train.labels, p.rebalance)
    fn = augment.make_augment_fn(p.augment_config(), 0)
    start_state = loop.snapshot(session.state_variables("frozen"))
    for n in map(int, FLAGS.sweep_steps):
        loop.restore(session.state_variables("frozen"), start_state)
        batches = iter(input_pipeline.train_dataset(images, train.labels, weights, global_batch=p.batch_size,
                                                    steps=n, seed=5, augment_fn=fn, resample=False))

        def sweep_step(lr):
            for g in groups:
                g.optimizer.learning_rate.assign(lr)
                g.beta_1.assign(0.9)
            return step(next(batches))[0]

        t = time.perf_counter()
        curve = lr_finder.sweep(sweep_step, n)
        seconds = time.perf_counter() - t
        print(f"sweep {n:3d} steps: ran {len(curve['lrs']):3d}, {seconds:6.1f} s, "
              f"valley suggestion {lr_finder.suggest(curve):.3g}", flush=True)


def mode_summary():
    summary = json.loads(open(FLAGS.summary).read())
    timings = summary["timings_s"]
    total = sum(timings.values())
    print(f"{summary['variant']} split={summary['split']} precision={summary['precision']} "
          f"folds={len(summary['folds'])}")
    for key in sorted(timings):
        print(f"  {key:18s} {timings[key]:8.1f} s  ({100 * timings[key] / total:4.1f}%)")
    print(f"  {'total (phases)':18s} {total:8.1f} s")
    rate = summary["train_images_per_s"]
    peak_frozen, _ = peak(summary["precision"], True)
    peak_unfrozen, _ = peak(summary["precision"], False)
    print(f"training images/s over frozen+unfrozen epochs: {rate:.1f}; model-only peak "
          f"{peak_frozen:.1f} (frozen) / {peak_unfrozen:.1f} (unfrozen)")
    epochs = summary["params"]["epochs_frozen"], summary["params"]["epochs_unfrozen"]
    blended = sum(epochs) / (epochs[0] / peak_frozen + epochs[1] / peak_unfrozen)
    print(f"RATIO run / model-only peak (epoch-weighted) = {rate / blended:.3f}")


def main(argv):
    del argv
    {"peak": mode_peak, "sweep": mode_sweep, "summary": mode_summary}[FLAGS.mode]()


if __name__ == "__main__":
    app.run(main)
