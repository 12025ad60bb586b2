"""docs/augmentation_comparison.png: fused projective transform vs Keras core layers on a real X-ray.

Row 1: the preprocessed image and fused augmentations (zoom+rotation+warp in
one transform, reflection padding, fastai brightness). Row 2: the Keras
layer chain (RandomZoom -> RandomRotation -> RandomPerspective ->
RandomBrightness). Row 3: the same geometry at full strength on a centre
crop, x3 magnified, to show the interpolation blur. Also prints the
sharpness (mean absolute Laplacian) of each and the time per batch of 64.

usage: python -m bench.augmentation_grid [--image=path/to/xray.jpg] [--out=docs/augmentation_comparison.png]
"""

import statistics

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from bench import timing  # noqa: E402
from images import augment  # noqa: E402
from components import configs  # noqa: E402
from images import preprocessing  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("image", None, "An X-ray (default: the first image of the embedded sample).")
flags.DEFINE_string("out", str(configs.REPO_ROOT / "docs" / "augmentation_comparison.png"), "PNG to write.")


def sharpness(images):
    lap = np.abs(images[:, 1:-1, 1:-1] * 4 - images[:, :-2, 1:-1] - images[:, 2:, 1:-1]
                 - images[:, 1:-1, :-2] - images[:, 1:-1, 2:])
    return float(lap.mean())


def main(argv):
    del argv
    path = FLAGS.image or sorted((configs.SAMPLE_DATA_DIR / "images").iterdir())[0]
    image = preprocessing.preprocess(tf.io.read_file(str(path)))
    batch = tf.repeat(image[None], 8, axis=0)
    cfg = configs.AugmentConfig()
    fused = augment.make_augment_fn(cfg, 0)(batch, tf.constant([0, 1], tf.int64)).numpy()
    keras_fn = augment.make_augment_fn(dataclass_replace(cfg, "keras_layers"), 0)
    layered = keras_fn(batch, tf.constant([0, 1], tf.int64)).numpy()
    # Identical geometry both ways: rotation 10 deg + zoom 1.1, no warp, no brightness.
    strong = configs.AugmentConfig(max_zoom=1.1, max_rotate=10, max_warp=0.0, max_lighting=0.0, p_affine=1.0)
    one_pass = augment.fused_augment(batch[:1], strong, tf.constant([3, 3], tf.int64)).numpy()
    import keras
    chain = keras.Sequential([keras.layers.RandomZoom((-0.1, -0.1), fill_mode="reflect", seed=1),
                              keras.layers.RandomRotation((10 / 360, 10 / 360), fill_mode="reflect", seed=2),
                              keras.layers.RandomPerspective(factor=1.0, scale=0.0, seed=3)])
    three_pass = chain(batch[:1], training=True).numpy()

    timings = {}
    big = tf.repeat(image[None], 64, axis=0)
    for name, fn in (("fused", augment.make_augment_fn(cfg, 0)), ("keras_layers", keras_fn)):
        seeds = iter([0, 0, 1, 2])  # the warm-up call's, then the 3 timed calls'
        timings[name] = timing.seconds_per_call(
            lambda fn=fn, seeds=seeds: fn(big, tf.constant([0, next(seeds)], tf.int64)).numpy(),
            warmup=1, repeats=3, stat=statistics.fmean)

    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, axes = plt.subplots(3, 5, figsize=(12.5, 8))
    show = lambda ax, im, title: (ax.imshow(np.clip(im, 0, 255).astype(np.uint8)), ax.set_title(title, fontsize=8),  # noqa: E731
                                  ax.axis("off"))
    show(axes[0, 0], image.numpy(), "preprocessed (224 px)")
    show(axes[1, 0], image.numpy(), "preprocessed (224 px)")
    for i in range(4):
        show(axes[0, i + 1], fused[i], f"fused #{i + 1}")
        show(axes[1, i + 1], layered[i], f"Keras layers #{i + 1}")
    crop = slice(80, 150)
    show(axes[2, 0], image.numpy()[crop, crop], "centre crop, original")
    show(axes[2, 1], one_pass[0][crop, crop], f"zoom+rot, 1 interpolation\nsharpness {sharpness(one_pass):.2f}")
    show(axes[2, 2], three_pass[0][crop, crop], f"zoom, rot, persp.: 3 interpolations\nsharpness {sharpness(three_pass):.2f}")
    axes[2, 3].axis("off")
    axes[2, 4].axis("off")
    axes[2, 3].text(0, 0.5, f"original sharpness {sharpness(image.numpy()[None]):.2f}\n"
                    f"time per batch of 64:\n  fused {timings['fused'] * 1000:.0f} ms\n"
                    f"  Keras layers {timings['keras_layers'] * 1000:.0f} ms", fontsize=9)
    fig.suptitle("Training augmentation: fused projective transform (top, chosen) vs Keras core layers (middle)")
    fig.tight_layout()
    fig.savefig(FLAGS.out, dpi=80)
    print(f"wrote {FLAGS.out}")
    print(f"sharpness (mean |Laplacian|): original {sharpness(image.numpy()[None]):.2f}, one interpolation "
          f"{sharpness(one_pass):.2f}, three interpolations {sharpness(three_pass):.2f}")
    print(f"time per batch of 64 (224 px): fused {timings['fused'] * 1000:.0f} ms, "
          f"Keras layers {timings['keras_layers'] * 1000:.0f} ms")


def dataclass_replace(cfg, method):
    import dataclasses
    return dataclasses.replace(cfg, method=method)


if __name__ == "__main__":
    app.run(main)
