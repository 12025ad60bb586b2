"""Is the input pipeline ever the bottleneck? Real-data training loop vs the same loop on in-memory tensors.

Runs the one training step (ResNet-18, body unfrozen, the given precision) on
(a) the real input pipeline: images decoded from the TFRecords once, then the
per-epoch tf.data stream with shuffling, rebalancing, batch-wise fused
augmentation and prefetch, exactly as `components/train/fold.py` feeds it, and
(b) one synthetic batch held in memory. Prints images/s of both and their
ratio (goal >= 0.90), plus the input pipeline alone.

usage: python -m bench.bench_input --tfrecords=<tfrecords artifact dir> [--steps=8 --precision=bf16]
"""

import statistics

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import models  # noqa: E402
from bench import timing  # noqa: E402
from components import configs  # noqa: E402
from components.train import input_pipeline, loop, rebalance, strategy as strat  # noqa: E402
from images import augment

FLAGS = flags.FLAGS
flags.DEFINE_string("tfrecords", None, "A tfrecords artifact folder (runs/tfrecords/<key>).", required=True)
flags.DEFINE_integer("steps", 8, "Timed steps per measurement (after 2 warm-up steps).")
flags.DEFINE_integer("batch_size", 64, "Global batch.")
flags.DEFINE_integer("image_size", 224, "Image size.")
flags.DEFINE_string("precision", "auto", "fp32 | bf16 | auto")
flags.DEFINE_string("rebalance", "resample", "none | class_weights | resample (resample is the costliest stream)")


def main(argv):
    del argv
    precision = strat.resolve_precision(FLAGS.precision)
    strategy = strat.get_strategy("auto")
    examples = input_pipeline.load_examples(FLAGS.tfrecords, "observed+imputed", FLAGS.image_size)
    with strategy.scope(), strat.precision_policy(precision):
        model, _ = models.build_classifier("resnet18", FLAGS.image_size)
        group = loop.ParamGroup(model.trainable_variables, 1.0, 0.01)
    step = loop.make_train_step(strategy, model, [group])
    group.set(1e-4, 0.9)
    images = tf.constant(examples.images)
    weights = rebalance.example_weights(examples.labels, FLAGS.rebalance)
    fn = augment.make_dataset_augment_fn(configs.AugmentConfig(), 0)
    total = FLAGS.steps + 2

    def real_batches(seed):
        return iter(strategy.distribute_datasets_from_function(lambda ctx: input_pipeline.train_dataset(
            images, examples.labels, weights, global_batch=FLAGS.batch_size, steps=total, seeds=[seed], augment_fn=fn,
            resample=FLAGS.rebalance == "resample", input_context=ctx)))

    synthetic = next(real_batches(99))  # one real batch, then held in memory

    def timed(batches):
        return FLAGS.batch_size / timing.seconds_per_call(lambda: float(step(next(batches))[0]), warmup=2,
                                                          repeats=FLAGS.steps, stat=statistics.fmean)

    class Repeat:
        def __next__(self):
            return synthetic

    # Interleave to share the machine's noise fairly: synthetic, real, synthetic, real.
    rates = {"synthetic": [], "real": []}
    for trial in range(2):
        rates["synthetic"].append(timed(Repeat()))
        rates["real"].append(timed(real_batches(trial)))
    pipe_only = real_batches(7)
    pipeline_rate = FLAGS.batch_size / timing.seconds_per_call(lambda: next(pipe_only), warmup=0, repeats=total,
                                                               stat=statistics.fmean)
    syn, real = np.median(rates["synthetic"]), np.median(rates["real"])
    print(f"precision={precision} batch={FLAGS.batch_size} size={FLAGS.image_size} rebalance={FLAGS.rebalance} "
          f"rows={len(examples)}")
    print(f"training loop, synthetic in-memory batch: {syn:7.1f} img/s  (trials {np.round(rates['synthetic'], 1)})")
    print(f"training loop, real input pipeline:       {real:7.1f} img/s  (trials {np.round(rates['real'], 1)})")
    print(f"input pipeline alone (decode cached, resample, augment): {pipeline_rate:7.1f} img/s")
    print(f"RATIO real / synthetic = {timing.format_ratio(real, syn, digits=3, unit='')}  (goal >= 0.90)")


if __name__ == "__main__":
    app.run(main)
