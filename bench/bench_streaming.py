"""Streaming vs in-memory training input: peak memory and speed as the data set grows, in one run.

For each image count (default 400 and 4,000 synthetic JPEG X-ray-sized images in TFRecords written by the
project's own writer), a fresh process per input mode loads the rows as the train stage does
(`input_pipeline.load_examples` with an unlimited budget = in memory, or a zero budget = streamed from
the shards), then runs the real training step (ResNet-18, body unfrozen, batch 64) on the phase
pipeline with training's epochs (every row once per epoch): images/s over the timed steps (at least
`--steps` and at least one epoch, so streaming's refill of its shuffle buffer at each epoch's start is
counted) and the process's peak resident memory. Printed: each cell, the speed ratio streamed / in
memory per count, and each mode's memory growth from the smallest count to the largest. A measuring
tool, not a test: numbers move with machine load.

usage: python -m bench.bench_streaming [--counts=400,4000 --steps=8 --image_px=512 --precision=auto]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

from bench import timing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MODES = {"in memory": float("inf"), "streamed": 0.0}


def write_synthetic_tfrecords(out_dir: pathlib.Path, count: int, image_px: int, seed: int = 0) -> None:
    """`count` distinct smooth grey JPEGs (about an X-ray's texture at `image_px`), labels 1 in 5, 4 shards."""
    import numpy as np
    import tensorflow as tf

    from tfrecords import schema, writer

    rng = np.random.default_rng(seed)
    base = tf.image.resize(rng.uniform(0, 255, (1, 32, 32, 1)).astype(np.float32), (image_px, image_px))[0]

    def examples():
        for i in range(count):
            noise = tf.image.resize(rng.uniform(-40, 40, (1, 16, 16, 1)).astype(np.float32), (image_px, image_px))[0]
            pixels = tf.cast(tf.clip_by_value(base + noise, 0, 255), tf.uint8)
            encoded = tf.io.encode_jpeg(tf.repeat(pixels, 3, axis=-1), quality=90).numpy()
            row = {"source_id": f"synthetic-{i:06d}.jpg", "filename": f"synthetic-{i:06d}.jpg",
                   "height": image_px, "width": image_px, "patientid": f"p{i // 2}", "age": "60",
                   "view": "PA", "offset": "", "mortality_observed": int(i % 5 == 0),
                   "mortality": int(i % 5 == 0), "label_source": "observed", "imputed_probability": float("nan")}
            yield schema.make_example(encoded, "jpeg", row)

    writer.write_shards(examples(), out_dir, "synthetic", 4, {})


def child(args) -> None:
    """One cell: load as the train stage does, then timed training steps; prints one JSON line."""
    import numpy as np
    import tensorflow as tf

    import models
    from components import configs
    from components.train import input_pipeline, loop, rebalance, strategy as strat
    from images import augment

    start = time.perf_counter()
    examples = input_pipeline.load_examples(pathlib.Path(args.tfrecords), "observed", 224, args.budget)
    load_seconds = time.perf_counter() - start
    precision = strat.resolve_precision(args.precision)
    strategy = strat.get_strategy("default")
    with strategy.scope(), strat.precision_policy(precision):
        model, _ = models.build_classifier("resnet18", 224)
        group = loop.ParamGroup(model.trainable_variables, 1.0, 0.01)
    group.set(1e-4, 0.9)
    step = loop.make_train_step(strategy, model, [group])
    streamed = isinstance(examples.images, input_pipeline.StreamedImages)
    images = examples.images if streamed else tf.constant(examples.images)
    # Epochs as training has them (every row once, full batches): streaming refills its shuffle buffer, a
    # pass over all the shards, at each epoch's start; the timed steps cross at least one such start.
    epoch_steps = input_pipeline.steps_per_epoch(len(examples), 64)
    timed = max(args.steps, epoch_steps)
    batches = iter(strategy.distribute_datasets_from_function(lambda ctx: input_pipeline.train_dataset(
        images, examples.labels, rebalance.example_weights(examples.labels, "class_weights"), global_batch=64,
        steps=epoch_steps, seeds=list(range(-(-(timed + 2) // epoch_steps))),
        augment_fn=augment.make_dataset_augment_fn(configs.AugmentConfig(), 0), resample=False, input_context=ctx)))
    seconds = timing.seconds_per_call(lambda: float(step(next(batches))[0]), warmup=2, repeats=timed, stat=sum)
    print(json.dumps({"streamed": streamed, "rows": len(examples), "load_s": round(load_seconds, 1),
                      "img_per_s": 64 * timed / seconds, "timed_steps": timed, "precision": precision,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "labels_mean": float(np.mean(examples.labels))}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="400,4000")
    parser.add_argument("--steps", type=int, default=8,
                        help="timed training steps (one 64-image batch each); at least one epoch")
    parser.add_argument("--image_px", type=int, default=512, help="side of the synthetic JPEGs")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tfrecords", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    counts = [int(c) for c in args.counts.split(",")]
    cells = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            folder = pathlib.Path(tmp) / str(count)
            folder.mkdir()
            subprocess.run([sys.executable, "-c", "import sys; from bench.bench_streaming import "
                            "write_synthetic_tfrecords as w; w(__import__('pathlib').Path(sys.argv[1]), "
                            "int(sys.argv[2]), int(sys.argv[3]))", str(folder), str(count), str(args.image_px)],
                           cwd=REPO_ROOT, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            for mode, budget in MODES.items():
                out = subprocess.run([sys.executable, "-m", "bench.bench_streaming", "--child",
                                      f"--tfrecords={folder}", f"--budget={budget}", f"--steps={args.steps}",
                                      f"--precision={args.precision}"], cwd=REPO_ROOT, check=True,
                                     capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
                cells[count, mode] = json.loads(out.stdout.strip().splitlines()[-1])
                cell = cells[count, mode]
                print(f"{count:6d} images, {mode:9s}: load {cell['load_s']:6.1f} s, train {cell['img_per_s']:6.1f} "
                      f"img/s ({cell['precision']}, {cell['timed_steps']} steps), "
                      f"peak RSS {cell['peak_rss_mb']:7.0f} MB", flush=True)
    for count in counts:
        speed = timing.format_ratio(cells[count, "streamed"]["img_per_s"], cells[count, "in memory"]["img_per_s"], 3)
        print(f"RATIO {count} images: streamed / in-memory training speed = {speed} (goal >= 0.90)")
    for mode in MODES:
        growth = timing.format_ratio(cells[counts[-1], mode]["peak_rss_mb"], cells[counts[0], mode]["peak_rss_mb"], 2)
        print(f"RATIO {mode}: peak RSS at {counts[-1]} / at {counts[0]} images = {growth}")


if __name__ == "__main__":
    main()
