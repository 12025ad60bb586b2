"""One fold of the study's schedule, resumable after a kill at any moment.

Schedule (fastai, as the study ran it): new head on the (partly) pretrained
body; body frozen -> LR finder -> fit_one_cycle(epochs_frozen, lr) ->
unfreeze -> LR finder -> fit_one_cycle(epochs_unfrozen, slice(lr/lr_mult, lr))
with discriminative rates over fastai's three ResNet parameter groups
(stem..layer2, layer3..layer4, head) at lr/lr_mult, lr/sqrt(lr_mult), lr. Each
LR sweep restores the weights it started from, and each phase starts a fresh
Adam (fastai keeps optimizer state across `fit` calls; here the frozen phase
only ever trained the head, so its moments are of little use to the body).
With `recompute_batch_norm`, the batch-norm moving statistics are then
recomputed from the training images (`batch_norm_stats`).

Resume: after every epoch the model's variables (weights, batch-norm
statistics, dropout RNG state) and the phase's optimizer state go to
`ckpt-<phase>-<epoch>.npz`, then `state.json` (history, chosen learning
rates, progress) names it; both are written atomically, so a kill leaves the
previous complete pair. Batches are a pure function of (seed, fold, phase,
epoch) (see `input_pipeline`), so a resumed fold computes exactly what an
uninterrupted one does (with op determinism on). A finished fold writes
`done.json` and is never trained again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import models
from common import files
from components import configs
from components.train import (augment, batch_norm_stats, input_pipeline, loop, lr_finder, metrics, rebalance, schedule,
                              strategy as strat)

PHASES = ("frozen", "unfrozen")
STATE = "state.json"
DONE = "done.json"
RESULT_DIR = "result"


@dataclasses.dataclass(frozen=True)
class TrainParams(configs.TrainConfig):
    """The train stage's settings (configs.TrainConfig) plus what the variant decides."""

    variant: str = "original_weights"
    labels: str = "observed"            # 'observed' | 'observed+imputed'
    rebalance: str = "class_weights"    # 'none' | 'class_weights' | 'resample'


def _variable_groups(model: keras.Model, lr_mult: float):
    """fastai's ResNet split: (stem..layer2, layer3..layer4, head) with even multipliers up to 1."""
    backbone = models.classifier.get_backbone(model)
    ids = {}
    for layer in backbone.layers:
        early = not layer.name.startswith(("layer3", "layer4"))
        for v in layer.trainable_weights:
            ids[id(v)] = 0 if early else 1
    if not any(k == 1 for k in ids.values()):  # not a torchvision-named ResNet: split the body in halves
        body = [v for v in backbone.trainable_weights]
        ids = {id(v): (0 if i < len(body) // 2 else 1) for i, v in enumerate(body)}
    groups = [[], [], []]
    for v in model.trainable_variables:
        groups[ids.get(id(v), 2)].append(v)
    multipliers = [1.0 / lr_mult, 1.0 / math.sqrt(lr_mult), 1.0]
    return [(g, m) for g, m in zip(groups, multipliers) if g]


class Session:
    """The model, its optimizers and traced steps, built once per run and reset for every fold."""

    def __init__(self, p: TrainParams, strategy: tf.distribute.Strategy, precision: str):
        self.p, self.strategy, self.precision = p, strategy, precision
        keras.utils.set_random_seed(p.seed)
        with strategy.scope(), strat.precision_policy(precision):
            self.model, self.report = models.build_classifier(p.arch, p.image_size, weights=p.weights,
                                                              weights_mode=p.weights_mode)
        self.fresh = tuple(self.report.fresh_layers) if self.report else ()
        self.initial = loop.snapshot(self.model.variables)
        self.groups, self.steps = {}, {}
        for phase in PHASES:
            self.set_phase(phase)
            if phase == "frozen":
                parts = [(list(self.model.trainable_variables), 1.0)]
            else:
                parts = _variable_groups(self.model, p.lr_mult)
            with strategy.scope():
                self.groups[phase] = [loop.ParamGroup(v, m, p.weight_decay) for v, m in parts]
            self.steps[phase] = loop.make_train_step(strategy, self.model, self.groups[phase])
        self.predict = loop.make_predict(self.model)

    def set_phase(self, phase: str) -> None:
        models.set_body_trainable(self.model, phase == "unfrozen", always_trainable=self.fresh)

    def reset(self, fold_seed: int) -> None:
        loop.restore(self.model.variables, self.initial)
        for v in self.model.variables:  # a different dropout stream per fold
            if "seed_generator_state" in v.path:
                v.assign(tf.cast([fold_seed, 0], v.dtype))
        for groups in self.groups.values():
            for g in groups:
                g.reset()

    def state_variables(self, phase: str) -> list[tf.Variable]:
        return list(self.model.variables) + [v for g in self.groups[phase] for v in g.state_variables()]


def _save_checkpoint(path: Path, variables) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as handle:
        np.savez(handle, *[v.numpy() for v in variables])
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _load_checkpoint(path: Path, variables) -> None:
    with np.load(path) as data:
        loop.restore(variables, [data[f"arr_{i}"] for i in range(len(data.files))])


class _Timer:
    def __init__(self, timings: dict, key: str):
        self.timings, self.key = timings, key

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.key] = self.timings.get(self.key, 0.0) + time.perf_counter() - self.start


def run_fold(session: Session, fold: int, train: input_pipeline.Examples, val: input_pipeline.Examples,
             work_dir: Path, on_epoch=lambda row: None, log=print) -> dict[str, Any]:
    """Train one fold (or resume it); returns its result record (also in `work_dir/done.json`)."""
    p, strategy = session.p, session.strategy
    work_dir.mkdir(parents=True, exist_ok=True)
    if (work_dir / DONE).is_file():
        return json.loads((work_dir / DONE).read_text())
    chief = strat.is_chief(strategy)
    state_path = work_dir / STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {
        "completed": {phase: 0 for phase in PHASES}, "lr": {}, "checkpoint": None, "history": [],
        "fed_counts": [0, 0], "timings": {}, "train_images": 0}
    fold_seed = input_pipeline.epoch_seed(p.seed, fold, "fold", 0)
    session.reset(fold_seed)
    if state["checkpoint"]:
        phase_of_ckpt = state["checkpoint"].split("-")[1]
        _load_checkpoint(work_dir / state["checkpoint"], session.state_variables(phase_of_ckpt))
        log(f"fold {fold}: resumed from {state['checkpoint']}")

    weights = rebalance.example_weights(train.labels, p.rebalance)
    steps = input_pipeline.steps_per_epoch(len(train), p.batch_size)
    global_batch = p.batch_size if len(train) >= p.batch_size else len(train) - len(train) % strategy.num_replicas_in_sync
    images = tf.constant(train.images)
    augment_fn = augment.make_augment_fn(session.p.augmentation, fold_seed % 100_000)
    resample = p.rebalance == "resample"
    target = (1 - p.resample_target, p.resample_target)
    timings = state["timings"]

    def epoch_batches(phase: str, epoch: int, num_steps: int):
        seed = input_pipeline.epoch_seed(p.seed, fold, phase, epoch)
        return iter(strategy.distribute_datasets_from_function(
            lambda ctx: input_pipeline.train_dataset(
                images, train.labels, weights, global_batch=global_batch, steps=num_steps, seed=seed,
                augment_fn=augment_fn, resample=resample, input_context=ctx, target=target)))

    def save_state():
        if chief:
            files.write_json_atomic(state_path, state)

    for phase in PHASES:
        epochs = p.epochs_frozen if phase == "frozen" else p.epochs_unfrozen
        if state["completed"][phase] >= epochs:
            continue
        session.set_phase(phase)
        groups, step = session.groups[phase], session.steps[phase]
        if phase not in state["lr"]:
            with _Timer(timings, f"lr_sweep_{phase}"):
                start = loop.snapshot(session.state_variables(phase))
                batches = epoch_batches(f"lr_{phase}", 0, p.lr_finder_steps)

                def sweep_step(lr):
                    for g in groups:
                        g.optimizer.learning_rate.assign(lr)
                        g.beta_1.assign(0.9)
                    return step(next(batches))[0]

                curve = lr_finder.sweep(sweep_step, p.lr_finder_steps, p.lr_finder_start, p.lr_finder_end)
                lr = lr_finder.suggest(curve)
                loop.restore(session.state_variables(phase), start)
            state["lr"][phase] = {"suggestion": lr, "steps_run": len(curve["lrs"]), "curve": curve}
            log(f"fold {fold}: LR finder ({phase}) suggests {lr:.3g} after {len(curve['lrs'])} steps")
            save_state()
        lr_max = state["lr"][phase]["suggestion"]
        cycle = schedule.OneCycle(epochs * steps, lr_max, p.pct_start, p.div, p.div_final)
        for epoch in range(state["completed"][phase], epochs):
            fed_logits, fed_labels, losses = [], [], []
            with _Timer(timings, phase):
                for i, batch in enumerate(epoch_batches(phase, epoch, steps)):
                    lr, beta_1 = cycle(epoch * steps + i)
                    for g in groups:
                        g.set(lr, beta_1)
                    loss, logits, labels = step(batch)
                    losses.append(float(loss))
                    fed_logits.append(logits.numpy())
                    fed_labels.append(labels.numpy())
            fed_labels = np.concatenate(fed_labels)
            counter = rebalance.FedCounter()
            counter.add(fed_labels)
            state["fed_counts"] = [int(a + b) for a, b in zip(state["fed_counts"], counter.counts)]
            state["train_images"] += len(fed_labels)
            with _Timer(timings, "validation"):
                val_logits = loop.predict_logits(session.predict, val.images, p.eval_batch_size)
            row = {"phase": phase, "epoch": epoch, "global_epoch": epoch + (p.epochs_frozen if phase == "unfrozen" else 0),
                   "lr_max": lr_max, "train_loss": float(np.mean(losses)),
                   "fed_positive_fraction": counter.positive_fraction,
                   **{k: v for k, v in metrics.binary_metrics(fed_labels, np.concatenate(fed_logits), "train").items()
                      if k != "train_loss"},
                   **validation_metrics(val, val_logits, p.labels)}
            state["history"].append(row)
            on_epoch(row)
            name = f"ckpt-{phase}-{epoch:03d}.npz"
            if chief:
                _save_checkpoint(work_dir / name, session.state_variables(phase))
            previous, state["checkpoint"] = state["checkpoint"], name
            state["completed"][phase] = epoch + 1
            save_state()
            if chief and previous and previous != name:
                (work_dir / previous).unlink(missing_ok=True)

    recomputed = 0
    if p.recompute_batch_norm:
        # The trainable flags of the last phase that ran (a finished fold resumed here ran none).
        session.set_phase("unfrozen" if p.epochs_unfrozen else "frozen")
        with _Timer(timings, "batch_norm_stats"):
            recomputed = batch_norm_stats.recompute(session.model, train.images, global_batch)
        log(f"fold {fold}: batch-norm statistics of {recomputed} layers recomputed on {len(train)} training images")
    val_logits = loop.predict_logits(session.predict, val.images, p.eval_batch_size)
    # val_* of the model as saved (after any recomputed statistics), train_* of its last epoch.
    final = {**(state["history"][-1] if state["history"] else {}), **validation_metrics(val, val_logits, p.labels)}
    result = {"fold": fold, "num_train": len(train), "num_val": len(val), "steps_per_epoch": steps,
              "global_batch": global_batch, "lr": {k: v["suggestion"] for k, v in state["lr"].items()},
              "lr_steps_run": {k: v["steps_run"] for k, v in state["lr"].items()},
              "final": final, "batch_norm_layers_recomputed": recomputed, "fed_counts": state["fed_counts"],
              "timings": timings, "train_images": state["train_images"],
              "weights": weights_description(session)}
    if chief:
        _write_fold_outputs(session, work_dir / RESULT_DIR, fold, state, val, val_logits, result)
        files.write_json_atomic(work_dir / DONE, result)
        if state["checkpoint"]:
            (work_dir / state["checkpoint"]).unlink(missing_ok=True)
    return result


def validation_metrics(val: input_pipeline.Examples, logits: np.ndarray, label_set: str) -> dict[str, float]:
    """val_* on observed labels only (always); val_incl_imputed_* = the study's way, imputed labels included."""
    observed = val.label_sources == "observed"
    out = metrics.binary_metrics(val.labels[observed], logits[observed], "val")
    if label_set != "observed":
        out.update(metrics.binary_metrics(val.labels, logits, "val_incl_imputed"))
    return out


def _scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar through TF core's `tf.summary.write` (the tensorboard package is not needed)."""
    from tensorflow.core.framework import summary_pb2
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata.SerializeToString())


def weights_description(session) -> str:
    """What the body started from, as every report must quote it."""
    if session.report is None:
        return "no pretrained weights (--weights not given): training from scratch"
    return session.report.summary()


def _write_fold_outputs(session, out: Path, fold, state, val, val_logits, result) -> None:
    import csv
    out.mkdir(parents=True, exist_ok=True)
    session.model.save(out / "model.keras")
    history = state["history"]
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))
        with open(out / "history.csv", "w", newline="") as handle:
            w = csv.DictWriter(handle, fieldnames=keys)
            w.writeheader()
            w.writerows(history)
    files.write_json_atomic(out / "history.json", history)
    probabilities = metrics.sigmoid(val_logits)
    rows = [{"source_id": s, "patient": pt, "label": int(lb), "label_source": src, "probability": float(pr)}
            for s, pt, lb, src, pr in zip(val.source_ids, val.patients, val.labels, val.label_sources, probabilities)]
    with open(out / "predictions.csv", "w", newline="") as handle:
        w = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["source_id"])
        w.writeheader()
        w.writerows(rows)
    files.write_json_atomic(out / "predictions.json", rows)
    for phase, entry in state["lr"].items():
        curve = entry["curve"]
        files.write_json_atomic(out / f"lr_find_{phase}.json", curve)
        lr_finder.plot(curve, out / f"lr_find_{phase}.png", f"fold {fold}, body {phase}: LR finder")
    writer = tf.summary.create_file_writer(str(out / "tensorboard"))
    with writer.as_default():
        for row in history:
            for key, value in row.items():
                if isinstance(value, float) and math.isfinite(value):
                    _scalar(key, value, row["global_epoch"])
        for phase, entry in state["lr"].items():
            for i, (lr, loss) in enumerate(zip(entry["curve"]["lrs"], entry["curve"]["losses"])):
                if math.isfinite(loss):
                    _scalar(f"lr_find_{phase}/smoothed_loss", loss, i)
    writer.close()
    files.write_json_atomic(out / "fold.json", result)
