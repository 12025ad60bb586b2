"""Profile behind `models/fused_batch_norm.py`: ResNet-18 step speed by batch-norm kernel and XLA.

    python -m bench.profile_batch_norm

Trains (forward, backward, Adam update) and runs inference on one in-memory
224 px batch of 32 with our ResNet-18 classifier, its batch norms either
Keras' BatchNormalization or the fused kernel, jit_compile off and on, in
float32 and mixed bfloat16. Each configuration runs in its own process (a
global precision policy cannot be undone); the fastest of 5 timed steps after
2 warm-up steps is kept, as other processes only ever add time.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench import timing

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [(precision, norm, jit) for precision in ("float32", "mixed_bfloat16") for norm in ("keras", "fused")
           for jit in (False, True)]


def measure(precision: str, norm: str, jit: bool, batch: int = 32) -> tuple[float, float]:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(precision)
    from models import resnet18_backbone
    if norm == "keras":
        resnet18_backbone.FusedBatchNormalization = keras.layers.BatchNormalization
    import models

    model, _ = models.build_classifier("resnet18", 224)
    optimizer = keras.optimizers.Adam(1e-5)
    variables = model.trainable_variables

    @tf.function(jit_compile=jit)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True)[:, 0], tf.float32)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(jit_compile=jit)
    def infer(x):
        return model(x, training=False)

    x = tf.random.uniform((batch, 224, 224, 3), 0, 255)
    y = tf.cast(tf.range(batch) % 2, tf.float32)

    def fastest(fn):
        return batch / timing.seconds_per_call(lambda: fn().numpy(), warmup=2, repeats=5, stat=min)

    return fastest(lambda: train_step(x, y)), fastest(lambda: infer(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, metavar=("PRECISION", "NORM", "JIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        train, infer = measure(args.one[0], args.one[1], args.one[2] == "on")
        print(f"{train:.1f} {infer:.1f}")
        return
    print(f"{'precision':15s} {'batch norm':10s} {'XLA':4s} {'train img/s':>11s} {'infer img/s':>11s}")
    rates = {}
    for precision, norm, jit in CONFIGS:
        out = subprocess.run([sys.executable, "-m", "bench.profile_batch_norm", "--one", precision, norm,
                              "on" if jit else "off"],
                             capture_output=True, text=True, check=True, cwd=REPO_ROOT).stdout.split()
        rates[precision, norm, jit] = train, infer = float(out[-2]), float(out[-1])
        print(f"{precision:15s} {norm:10s} {'on' if jit else 'off':4s} {train:11.1f} {infer:11.1f}", flush=True)
    for precision in ("float32", "mixed_bfloat16"):
        (kt, ki), (ft, fi) = rates[precision, "keras", False], rates[precision, "fused", False]
        print(f"RATIO {precision}: fused / Keras batch norm (XLA off): train {timing.format_ratio(ft, kt)}, "
              f"inference {timing.format_ratio(fi, ki)}")


if __name__ == "__main__":
    main()
