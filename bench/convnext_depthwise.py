"""Profile behind `models/convnext.py`: ConvNeXt-T step speed, Keras' grouped 7x7 convolutions vs depthwise ones.

    python -m bench.convnext_depthwise

Trains (forward, backward, Adam update) and runs inference on one in-memory
224 px batch of 16 with the project's ConvNeXt classifier, its body either
Keras' stock `ConvNeXtTiny` (channel-wise `Conv2D(groups=C)`) or the same
network with `DepthwiseConv2D` layers, in float32 and mixed bfloat16. Each
configuration runs in its own process (a global precision policy cannot be
undone); the fastest of 3 timed steps after 1 warm-up step is kept, as other
processes only ever add time.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench import timing

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [(precision, body) for precision in ("float32", "mixed_bfloat16") for body in ("grouped", "depthwise")]


def measure(precision: str, body: str, batch: int = 16) -> tuple[float, float]:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(precision)
    from models import build_image_classifier, convnext

    shape = (224, 224, 3)
    backbone = convnext.convnext_tiny(shape) if body == "depthwise" else keras.applications.ConvNeXtTiny(
        include_top=False, weights=None, input_shape=shape, include_preprocessing=False)
    model = build_image_classifier(backbone, image_size=224)
    optimizer = keras.optimizers.Adam(1e-5)
    variables = model.trainable_variables

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True)[:, 0], tf.float32)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function
    def infer(x):
        return model(x, training=False)

    x = tf.random.uniform((batch, *shape), 0, 255)
    y = tf.cast(tf.range(batch) % 2, tf.float32)

    def fastest(fn):
        return batch / timing.seconds_per_call(lambda: fn().numpy(), warmup=1, repeats=3, stat=min)

    return fastest(lambda: train_step(x, y)), fastest(lambda: infer(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("PRECISION", "BODY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        train, infer = measure(*args.one)
        print(f"{train:.2f} {infer:.2f}")
        return
    print(f"{'precision':15s} {'7x7 conv':10s} {'train img/s':>11s} {'infer img/s':>11s}")
    rates = {}
    for precision, body in CONFIGS:
        out = subprocess.run([sys.executable, "-m", "bench.convnext_depthwise", "--one", precision, body],
                             capture_output=True, text=True, check=True, cwd=REPO_ROOT).stdout.split()
        rates[precision, body] = train, infer = float(out[-2]), float(out[-1])
        print(f"{precision:15s} {body:10s} {train:11.2f} {infer:11.2f}", flush=True)
    for precision in ("float32", "mixed_bfloat16"):
        (gt, gi), (dt, di) = rates[precision, "grouped"], rates[precision, "depthwise"]
        print(f"RATIO {precision}: depthwise / grouped: train {timing.format_ratio(dt, gt)}, "
              f"inference {timing.format_ratio(di, gi)}")


if __name__ == "__main__":
    main()
