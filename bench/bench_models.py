"""Speed of our Keras ResNet-18 classifier beside torchvision's ResNet-18, same CPU, same run.

    python -m bench.bench_models --torch_python=/work/torchvenv/bin/python

Each configuration runs in its own process (a global precision policy and
oneDNN/XLA settings cannot be undone inside one), which also makes ru_maxrss a
per-configuration peak. Measured: training images/s (forward, backward and SGD
update on one 224 px batch), inference images/s, peak resident memory; for
precision float32 and mixed bfloat16 (torch: autocast to bfloat16 on CPU).
Then, with the project's weights file (when present), it checks that mixed
bfloat16 predictions on real X-rays stay within a stated tolerance of float32.
This is a measuring tool, not a test: numbers move with machine load.
"""

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile

from bench import timing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "resnet18_imagenet_partial.npz"
DEFAULT_IMAGES = REPO_ROOT.parent / "shared" / "data" / "covid-chestxray-dataset" / "images"
PRECISIONS = ("float32", "mixed_bfloat16")
GOALS = {"train": 1.2, "infer": 1.5}  # ours / torchvision, same precision
BF16_LOGIT_TOLERANCE = 0.1  # max |logit_bf16 - logit_fp32| over the real images
BF16_PROBABILITY_TOLERANCE = 0.02


def _fastest(step, args):
    """Seconds per call of `step` after `args.warmup` untimed calls: the fastest of `args.steps` calls.

    The minimum, not the median: other processes on a shared machine only ever add time.
    """
    return timing.seconds_per_call(step, warmup=args.warmup, repeats=args.steps, stat=min)


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_images(images_dir, count, size):
    from PIL import Image
    import numpy as np
    paths = sorted(p for p in pathlib.Path(images_dir).iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR),
                                np.float32) for p in paths])


def run_ours(args):
    """Child process: our classifier under one precision; prints one JSON line."""
    import numpy as np
    import keras
    import tensorflow as tf
    from models import build_classifier

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    weights = args.weights if args.weights and pathlib.Path(args.weights).is_file() else None
    model, _ = build_classifier("resnet18", image_size=args.image_size, weights=weights)
    jit = args.jit_compile == "on"
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True), jit_compile=jit)
    rng = np.random.RandomState(0)
    images = tf.constant(rng.uniform(0, 255, (args.batch, args.image_size, args.image_size, 3)), tf.float32)
    labels = tf.constant(rng.randint(0, 2, (args.batch, 1)), tf.float32)

    result = {"precision": args.precision, "jit_compile": jit}
    if args.weights_out:  # agreement check: fp32 writes the weights, bf16 reads them
        if pathlib.Path(args.weights_out).is_file():
            model.load_weights(args.weights_out)
        else:
            model.save_weights(args.weights_out)
        real = _load_images(args.images_dir, args.real_images, args.image_size)
        result["real_logits"] = model.predict_on_batch(real).reshape(-1).tolist()
    infer = _fastest(lambda: model.predict_on_batch(images), args)
    train = _fastest(lambda: model.train_on_batch(images, labels), args)
    result.update(train=args.batch / train, infer=args.batch / infer, peak_rss_mib=_peak_rss_mib())
    print(json.dumps(result))


def run_torch(args):
    """Child process (torch venv): torchvision ResNet-18 with a one-logit fc; prints one JSON line."""
    import contextlib
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Linear(512, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    images = torch.rand(args.batch, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 2, (args.batch, 1)).float()
    bf16 = args.precision == "mixed_bfloat16"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(images).float(), labels)
        loss.backward()
        optimizer.step()

    def infer_step():
        model.eval()
        with torch.inference_mode(), autocast():
            model(images)

    infer = _fastest(infer_step, args)
    train = _fastest(train_step, args)
    print(json.dumps({"precision": args.precision, "threads": torch.get_num_threads(),
                      "train": args.batch / train, "infer": args.batch / infer,
                      "peak_rss_mib": _peak_rss_mib()}))


def _child(python, mode, precision, args, extra=(), env=None):
    command = [python, "-m", "bench.bench_models", f"--child={mode}", f"--precision={precision}",
               f"--batch={args.batch}", f"--image_size={args.image_size}", f"--warmup={args.warmup}",
               f"--steps={args.steps}", f"--jit_compile={args.jit_compile}", *extra]
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})},
                               cwd=REPO_ROOT)
    if completed.returncode != 0:
        raise RuntimeError(f"{mode}/{precision} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(args):
    torch_python = args.torch_python if args.torch_python and pathlib.Path(args.torch_python).is_file() else None
    env = {"TF_ENABLE_ONEDNN_OPTS": "1" if args.onednn == "on" else "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    print(f"batch {args.batch}, {args.image_size} px, {os.cpu_count()} CPUs, best of {args.rounds} x {args.steps} steps "
          f"after {args.warmup} warm-up each; ours: jit_compile={args.jit_compile}, oneDNN={args.onednn}; "
          f"load average before: {os.getloadavg()[0]:.2f} (other processes distort the numbers)")
    if not torch_python:
        print(f"torchvision peer skipped: no torch python at {args.torch_python!r}; ours only")
    agreement = {}
    with tempfile.TemporaryDirectory() as scratch:
        check = args.real_images > 0 and pathlib.Path(args.images_dir).is_dir()
        extra = [f"--weights={args.weights}"]
        if check:
            extra += [f"--weights_out={scratch}/model.weights.h5", f"--images_dir={args.images_dir}",
                      f"--real_images={args.real_images}"]
        print(f"{'precision':<16}{'model':<13}{'train img/s':>12}{'infer img/s':>12}{'peak MiB':>10}")
        for precision in PRECISIONS:
            # Alternate ours and torch `rounds` times and keep each one's best: load from other
            # processes then hits both sides alike instead of whichever ran during a burst.
            best = {}
            for round_index in range(args.rounds):
                ours = _child(sys.executable, "ours", precision, args, extra if round_index == 0 else [], env)
                agreement.setdefault(precision, ours.get("real_logits"))
                results = {"ours (Keras)": ours}
                if torch_python:
                    results["torchvision"] = _child(torch_python, "torch", precision, args)
                for name, result in results.items():
                    kept = best.setdefault(name, result)
                    for key in ("train", "infer"):
                        kept[key] = max(kept[key], result[key])
                    kept["peak_rss_mib"] = max(kept["peak_rss_mib"], result["peak_rss_mib"])
            for name, result in best.items():
                print(f"{precision:<16}{name:<13}{result['train']:>12.1f}{result['infer']:>12.1f}"
                      f"{result['peak_rss_mib']:>10.0f}   (load {os.getloadavg()[0]:.2f})")
            if torch_python:
                ours, torch_result = best["ours (Keras)"], best["torchvision"]
                ratios = {k: ours[k] / torch_result[k] for k in GOALS}
                print(f"{precision:<16}{'ours/torch':<13}"
                      + "".join(f"{timing.format_ratio(ours[k], torch_result[k]):>12}" for k in GOALS)
                      + "   goals: " + ", ".join(f"{k} >= {g}x {'met' if ratios[k] >= g else 'NOT met'}"
                                                 for k, g in GOALS.items()))
    if agreement.get("float32") and agreement.get("mixed_bfloat16"):
        import numpy as np
        fp32, bf16 = np.array(agreement["float32"]), np.array(agreement["mixed_bfloat16"])
        logit_error = np.abs(fp32 - bf16).max()
        probability_error = np.abs(1 / (1 + np.exp(-fp32)) - 1 / (1 + np.exp(-bf16))).max()
        ok = logit_error <= BF16_LOGIT_TOLERANCE and probability_error <= BF16_PROBABILITY_TOLERANCE
        print(f"bf16 vs fp32 on {len(fp32)} real X-rays (weights: {args.weights}): max |d logit| "
              f"{logit_error:.4f} (tolerance {BF16_LOGIT_TOLERANCE}), max |d probability| "
              f"{probability_error:.4f} (tolerance {BF16_PROBABILITY_TOLERANCE}): {'OK' if ok else 'FAILED'}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch_python", default=None, help="python of a venv with torch + torchvision")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of ours and torch")
    # XLA off by default: measured here, XLA's CPU convolutions trained ~1.6x slower than oneDNN's.
    parser.add_argument("--jit_compile", choices=("on", "off"), default="off")
    parser.add_argument("--onednn", choices=("on", "off"), default="on")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--images_dir", default=str(DEFAULT_IMAGES))
    parser.add_argument("--real_images", type=int, default=8, help="0 skips the bf16 agreement check")
    # Internal: which child this process is.
    parser.add_argument("--child", choices=("ours", "torch"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--weights_out", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    {"ours": run_ours, "torch": run_torch, None: main}[arguments.child](arguments)
