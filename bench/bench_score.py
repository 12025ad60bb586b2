"""Throughput of `pipeline.score` beside the bare SavedModel on preprocessed tensors, same run.

    python -m bench.bench_score                       # ResNet-18 at 224 px, 1 model, 96 images
    python -m bench.bench_score --folds=5 --count=256 --images=path/to/images

Both sides use the same SavedModel (random weights: speed does not depend on
them) and batch size:
- score: `pipeline.score.score` end to end (read and check each file with
  image_io, JPEG decode + resize + crop in the graph, the models, CSV writing),
  its images/s over reading and scoring (the job's own figure; the first call's
  warm-up included) and with the model's loading too;
- bare: the `predict_images` signature on tensors already decoded and cropped;
- served: the `serving_default` signature (the job's) on the same files' bytes,
  loaded again as the timed job loads it: its first call (graph optimisation and
  kernel set-up, paid once per load) timed apart from the steady calls after it.
The ratio score/bare is the share of the model's speed the batch job keeps;
the rest is file reading, decoding and the first call. served/bare (steady) is
what the in-graph decode costs alone; served_first_call_extra_s is what the
job's first batch pays on top of a steady one. A measuring tool, not a test:
numbers move with machine load.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile

from bench import timing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = REPO_ROOT / "sample_data" / "covid-chestxray-sample" / "images"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--folds", type=int, default=1, help="models averaged in the SavedModel")
    parser.add_argument("--count", type=int, default=96, help="images scored (the folder's files, repeated)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--images", default=str(SAMPLE_IMAGES))
    args = parser.parse_args()

    print(json.dumps(measure(args.arch, args.image_size, args.folds, args.count, args.batch_size, args.images)))


def measure(arch: str, image_size: int, folds: int, count: int, batch_size: int, images: str) -> dict:
    """Images/s of the scoring job and of the bare signature, same model and batches, and their ratio."""
    import numpy as np
    import tensorflow as tf

    from models import build_classifier
    from pipeline import score
    from serving import contract, signature
    from images import image_io, preprocessing

    files = sorted(p for p in pathlib.Path(images).iterdir() if p.suffix.lower() in score.IMAGE_SUFFIXES)
    entries = [(f"{i}_{p.name}", p) for i, p in zip(range(count), files * (count // len(files) + 1))]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        members = [build_classifier(arch, image_size=image_size)[0] for _ in range(folds)]
        signature.write_saved_model(members, tmp / "saved_model")
        del members

        score.score(entries[: batch_size], tmp / "saved_model", tmp / "warmup.csv", batch_size,
                    progress=False)  # traces and warms the graph
        counts = score.score(entries, tmp / "saved_model", tmp / "scores.csv", batch_size, progress=False)

        encoded = [image_io.load_standard_image(p).encoded for _, p in entries]
        byte_batches = [tf.constant(encoded[i:i + batch_size]) for i in range(0, len(encoded), batch_size)]
        served = score.load_signature(tmp / "saved_model")
        first_call, *steady_calls = timing.call_seconds(
            lambda: served(image_bytes=byte_batches[0])[contract.PROBABILITY].numpy(), warmup=0, repeats=4)
        served_first_call_extra = first_call - statistics.median(steady_calls)
        feed = iter(byte_batches)
        served_ips = len(encoded) / timing.seconds_per_call(
            lambda: served(image_bytes=next(feed))[contract.PROBABILITY].numpy(), warmup=0,
            repeats=len(byte_batches), stat=sum)

        bare = tf.saved_model.load(str(tmp / "saved_model")).signatures[contract.IMAGES_SIGNATURE]
        tensors = np.stack([preprocessing.preprocess(tf.constant(e), image_size).numpy() for e in encoded])
        batches = [tf.constant(tensors[i:i + batch_size]) for i in range(0, len(tensors), batch_size)]
        bare(images=batches[0])  # warm-up
        feed = iter(batches)
        seconds = timing.seconds_per_call(lambda: bare(images=next(feed))[contract.PROBABILITY].numpy(),
                                          warmup=0, repeats=len(batches), stat=sum)
        bare_ips = len(tensors) / seconds

    return {"arch": arch, "image_size": image_size, "folds": folds, "images": len(entries),
            "batch_size": batch_size, "score_images_per_s": counts["images_per_second"],
            "score_load_s": counts["load_seconds"],
            "score_images_per_s_with_load": round((counts["scored"] + counts["errors"]) / counts["seconds"], 2),
            "bare_signature_images_per_s": round(bare_ips, 2),
            "ratio_score_over_bare": round(counts["images_per_second"] / bare_ips, 3),
            "served_signature_images_per_s": round(served_ips, 2),
            "ratio_served_over_bare": round(served_ips / bare_ips, 3),
            "served_first_call_extra_s": round(served_first_call_extra, 3),
            "errors": counts["errors"]}


if __name__ == "__main__":
    main()
