"""Training speed: model-only peak, LR-sweep length, and the phases of a finished run.

1. `--mode=peak`: images/s of one training step on an in-memory batch
   (ResNet-18 224 px, batch 64), body frozen and unfrozen, fp32 and bf16:
   the ceiling any input pipeline can reach on this machine.
2. `--mode=sweep`: per fold, LR sweeps of fastai's 100 steps and shorter
   ones, each repeated with other batch seeds, body frozen and (after the
   frozen phase) unfrozen: how far a shorter sweep's suggestion lands from
   fastai's, against how far fastai's own moves with the batches drawn (the
   lever behind `--lr_finder_steps`).
3. `--mode=summary --summary=<train_summary.json>`: seconds per phase (LR
   sweeps, frozen, unfrozen, validation) of a finished run, its training
   images/s and the ratio to the bf16 model-only peak measured in the same
   process; then the run's lower bound (`bench/peak_bound.py`: its
   training images at that peak) against `--goal_s`.
4. `--mode=profile --tfrecords=DIR`: fold 0's epochs as the pipeline runs
   them (LR sweeps given), then one unfrozen LR sweep, each under cProfile:
   where the main thread waits (train step, next batch, validation,
   checkpoint writes) and the ratio to the model-only peak.

usage: python -m bench.bench_train --mode=peak|sweep|summary|profile [--tfrecords=DIR] [--summary=FILE]
"""

import cProfile
import dataclasses
import json
import math
import pathlib
import pstats
import tempfile
import time

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import models  # noqa: E402
from bench import timing  # noqa: E402
from bench.peak_bound import seconds_at_peak  # noqa: E402
from common import files  # noqa: E402
from components.train import (fold as fold_lib, input_pipeline, loop, rebalance, splits,  # noqa: E402
                              strategy as strat)
from images import augment  # noqa: E402
from models.predict import make_predict  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "peak", ["peak", "sweep", "summary", "profile"], "What to measure.")
flags.DEFINE_string("tfrecords", None, "tfrecords artifact folder (sweep mode).")
flags.DEFINE_string("summary", None, "train_summary.json of a finished run (summary mode).")
flags.DEFINE_float("goal_s", 720.0, "Seconds of training a variant should take (summary mode; #17: 720).")
flags.DEFINE_string("weights", None, "Pretrained body for sweep mode.")
flags.DEFINE_list("sweep_steps", ["100", "30"], "LR sweep lengths to compare (100 = fastai, the reference).")
flags.DEFINE_list("sweep_seeds", ["1", "2"], "Batch seeds: each length is swept once per seed.")
flags.DEFINE_list("folds", ["0", "1", "2"], "Folds to sweep (sweep mode).")
flags.DEFINE_list("precisions", ["fp32", "bf16"], "Precisions for peak mode.")
flags.DEFINE_integer("steps", 4, "Timed steps per peak measurement.")
flags.DEFINE_list("profile_epochs", ["2", "8"], "Frozen, unfrozen epochs of the profiled fold (profile mode).")
flags.DEFINE_integer("profile_sweep_steps", 20, "Steps of the profiled LR sweep (profile mode).")


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
    predict = make_predict(model)
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


def _sweep(session, phase, examples, p, steps, seed):
    """One LR sweep (`fold.lr_sweep`) of `steps` on `examples`, batches drawn with `seed`; the model is
    restored after. Returns the curve (with its suggestion) and the seconds it took."""
    weights = rebalance.example_weights(examples.labels, p.rebalance)
    fn = augment.make_dataset_augment_fn(p.augmentation, seed)
    batches = iter(input_pipeline.train_dataset(tf.constant(examples.images), examples.labels, weights,
                                                global_batch=p.batch_size, steps=steps, seeds=[seed], augment_fn=fn,
                                                resample=False))
    t = time.perf_counter()
    _, curve = fold_lib.lr_sweep(session, phase, batches, dataclasses.replace(p, lr_finder_steps=steps))
    return curve, time.perf_counter() - t


def _run_fold_with(session, fold, train, val, curves, **epochs):
    """`fold_lib.run_fold` as the pipeline runs it, the LR sweeps of `curves` ({phase: curve}) already done;
    `epochs`: epochs_frozen / epochs_unfrozen instead of the session's. Returns the fold's result record."""
    state = fold_lib.new_state()
    state["lr"] = {phase: {"suggestion": curve["suggestion"], "steps_run": len(curve["lrs"]), "curve": curve}
                   for phase, curve in curves.items()}
    params = session.p
    session.p = dataclasses.replace(params, **epochs)
    try:
        with tempfile.TemporaryDirectory() as work:
            files.write_json_atomic(pathlib.Path(work) / fold_lib.STATE, state)
            return fold_lib.run_fold(session, fold, train, val, pathlib.Path(work), log=lambda *a: None)
    finally:
        session.p = params


def mode_sweep():
    """Per fold: frozen sweeps of each length x seed; the frozen phase (fastai's 100-step LR); unfrozen sweeps."""
    p = fold_lib.TrainParams(weights=FLAGS.weights, precision="auto", lr_finder_steps=100, epochs_unfrozen=0)
    lengths, seeds = list(map(int, FLAGS.sweep_steps)), list(map(int, FLAGS.sweep_seeds))
    reference = (100, seeds[0])
    if reference[0] not in lengths:
        raise app.UsageError("--sweep_steps must include 100, fastai's length, the reference")
    precision = strat.resolve_precision(p.precision)
    examples = input_pipeline.load_examples(FLAGS.tfrecords, p.labels, p.image_size)
    folds = splits.make_folds(examples.labels, examples.patients, p.split, p.folds, p.seed)
    session = fold_lib.Session(p, strat.get_strategy("auto"), precision)
    curves = {}
    print("fold phase     steps seed  ran seconds suggestion", flush=True)
    for fold in map(int, FLAGS.folds):
        train_idx, val_idx = folds[fold]
        train, val = examples.subset(train_idx), examples.subset(val_idx)
        session.reset(1)
        for phase in fold_lib.PHASES:
            if phase == "unfrozen":
                _run_fold_with(session, fold, train, val, {"frozen": curves[(fold, "frozen", *reference)]})
            session.set_phase(phase)
            for n in lengths:
                for seed in seeds:
                    curve, seconds = _sweep(session, phase, train, p, n, seed)
                    curves[(fold, phase, n, seed)] = curve
                    print(f"{fold:4d} {phase:9s} {n:5d} {seed:4d} {len(curve['lrs']):4d} {seconds:7.1f} "
                          f"{curve['suggestion']:10.3g}", flush=True)
    suggestions = {key: curve["suggestion"] for key, curve in curves.items()}
    print("\n|log10| distance of each sweep's suggestion from fastai's (100 steps, first seed), same fold and phase:")
    for phase in fold_lib.PHASES:
        for n in lengths:
            for seed in seeds:
                if (n, seed) == reference:
                    continue
                d = [abs(math.log10(suggestions[(f, phase, n, seed)] / suggestions[(f, phase, *reference)]))
                     for f in map(int, FLAGS.folds)]
                r = [math.log10(suggestions[(f, phase, n, seed)] / suggestions[(f, phase, *reference)])
                     for f in map(int, FLAGS.folds)]
                print(f"  {phase:9s} {n:3d} steps seed {seed}: median |d| {np.median(d):.2f} decades, "
                      f"mean signed {np.mean(r):+.2f} decades")


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
    try:
        bound = seconds_at_peak(summary, {"frozen": peak_frozen, "unfrozen": peak_unfrozen})
    except ValueError as error:
        raise app.UsageError(f"--summary={FLAGS.summary}: {error}") from error
    print("lower bound: each phase's training images at the model-only peak (phases that do not train as measured)")
    for key in sorted(bound):
        images, seconds = bound[key]
        print(f"  {key:18s} {images:6d} img {seconds:8.1f} s  (run {timings[key]:7.1f} s, "
              f"RATIO bound / run {seconds / timings[key]:.3f})")
    bound_total = sum(seconds for _, seconds in bound.values())
    verdict = ("within reach" if bound_total <= FLAGS.goal_s
               else "out of reach on this host without training on fewer images")
    print(f"  {'total':18s} {'':10s} {bound_total:8.1f} s  (run {total:7.1f} s, RATIO bound / run "
          f"{bound_total / total:.3f}); goal {FLAGS.goal_s:.0f} s = {FLAGS.goal_s / bound_total:.2f}x the bound: "
          f"{verdict}")


def _print_profile(profile: cProfile.Profile, seconds: float, what: str, top: int = 30) -> None:
    """The `top` functions by cumulative seconds on the main thread (ours and TensorFlow's)."""
    stats = pstats.Stats(profile)
    rows = sorted(((cumulative, calls, f"{pathlib.Path(path).name}:{line}({name})")
                   for (path, line, name), (_, calls, _, cumulative, _) in stats.stats.items()), reverse=True)
    print(f"{what}: {seconds:.1f} s wall; top {top} functions (cumulative s, % of wall, calls):")
    for cumulative, calls, where in rows[:top]:
        print(f"  {cumulative:8.2f} s {100 * cumulative / seconds:5.1f}%  {calls:6d}  {where}")


def mode_profile():
    """Fold 0 as the pipeline trains it, LR sweeps given (so the epochs alone), under cProfile; then one LR
    sweep of `--profile_sweep_steps` steps. Prints where the main thread spent the time and the phases'
    images/s against the model-only peak measured in the same process."""
    epochs_frozen, epochs_unfrozen = map(int, FLAGS.profile_epochs)
    p = fold_lib.TrainParams(weights=FLAGS.weights, precision="auto", epochs_frozen=epochs_frozen,
                             epochs_unfrozen=epochs_unfrozen)
    precision = strat.resolve_precision(p.precision)
    examples = input_pipeline.load_examples(FLAGS.tfrecords, p.labels, p.image_size)
    train_idx, val_idx = splits.make_folds(examples.labels, examples.patients, p.split, p.folds, p.seed)[0]
    train, val = examples.subset(train_idx), examples.subset(val_idx)
    session = fold_lib.Session(p, strat.get_strategy("auto"), precision)
    curve = {"lrs": [1e-3], "losses": [0.7], "suggestion": 1e-3}  # the LR finder's part is profiled below
    curves = {"frozen": curve, "unfrozen": {**curve, "suggestion": 1e-4}}
    # Untimed: one epoch of each phase traces the steps, as the first fold's LR sweeps do in a run.
    _run_fold_with(session, 0, train, val, curves, epochs_frozen=1, epochs_unfrozen=1)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    result = _run_fold_with(session, 0, train, val, curves)
    profile.disable()
    _print_profile(profile, time.perf_counter() - start,
                   f"fold 0, {p.epochs_frozen} frozen + {p.epochs_unfrozen} unfrozen epochs of "
                   f"{result['steps_per_epoch']} step(s) x {result['global_batch']} images, {precision}")
    timings = result["timings"]
    for phase, frozen in (("frozen", True), ("unfrozen", False)):
        epochs = p.epochs_frozen if frozen else p.epochs_unfrozen
        rate = epochs * result["steps_per_epoch"] * result["global_batch"] / timings[phase]
        peak_rate, _ = peak(precision, frozen)
        print(f"{phase:9s} epochs: {timings[phase]:6.1f} s, {rate:5.1f} img/s; model-only peak {peak_rate:5.1f} "
              f"img/s; RATIO {timing.format_ratio(rate, peak_rate, 3)}")
    print(f"validation {timings['validation']:.1f} s over {p.epochs_frozen + p.epochs_unfrozen} epochs")

    session.reset(1)
    session.set_phase("unfrozen")
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    curve, _ = _sweep(session, "unfrozen", train, p, FLAGS.profile_sweep_steps, seed=1)
    profile.disable()
    seconds = time.perf_counter() - start
    _print_profile(profile, seconds, f"unfrozen LR sweep, {len(curve['lrs'])} steps x {p.batch_size} images")
    peak_rate, _ = peak(precision, False)
    rate = len(curve["lrs"]) * p.batch_size / seconds
    print(f"unfrozen sweep: {rate:5.1f} img/s; model-only peak {peak_rate:5.1f} img/s; "
          f"RATIO {timing.format_ratio(rate, peak_rate, 3)}")


def main(argv):
    del argv
    {"peak": mode_peak, "sweep": mode_sweep, "summary": mode_summary, "profile": mode_profile}[FLAGS.mode]()


if __name__ == "__main__":
    app.run(main)
