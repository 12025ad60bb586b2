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

Resume: after an epoch, once `checkpoint_every_s` seconds have passed since
the last checkpoint and always after a phase's last epoch, the model's
variables (weights, batch-norm statistics, dropout RNG state) and the phase's
optimizer state go to `ckpt-<phase>-<epoch>.npz`, then `state.json` (history,
chosen learning rates, progress) names it; both are written atomically, so a
kill leaves the previous complete pair and the epochs after it run again. (A
checkpoint is ~140 MB with Adam's moments: on the mirror's one-step epochs,
writing one every epoch cost more than the step.) Batches are a pure function
of (seed, fold, phase, epoch) (see `input_pipeline`), so a resumed fold
computes exactly what an uninterrupted one does (with op determinism on). A
finished fold writes `done.json` and is never trained again.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import keras
import numpy as np
import tensorflow as tf

import models
from common import files
from common.seeds import epoch_seed
from components.train import (aux_targets, batch_norm_stats, input_pipeline, linear_probe, loop, lr_finder, metrics,
                              outputs, rebalance, schedule, strategy as strat)
from images import augment
from models.predict import make_predict
from components.train.params import TrainParams

PHASES = ("frozen", "unfrozen")
STATE = "state.json"
DONE = "done.json"


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
            if p.method == "lp_ft":  # the probe's network: stages 1-3 pooled, one linear layer
                self.model = linear_probe.probe_classifier(self.model)
                self.features = linear_probe.feature_model(self.model)
            # What trains: the model, or the model with its auxiliary heads (sharing its layers).
            aux_count = len(aux_targets.parse(p.aux_targets))
            self.trained = aux_targets.training_model(self.model, aux_count) if aux_count else self.model
        body = {layer.name for layer in models.classifier.get_backbone(self.model).layers}
        self.fresh = tuple(name for name in self.report.fresh_layers if name in body) if self.report else ()
        self.initial = loop.snapshot(self.trained.variables)
        self.groups, self.steps = {}, {}
        for phase in PHASES:
            self.set_phase(phase)
            if phase == "frozen":
                parts = [(list(self.trained.trainable_variables), 1.0)]
            else:
                parts = _variable_groups(self.trained, p.lr_mult)
            with strategy.scope():
                self.groups[phase] = [loop.ParamGroup(v, m, p.weight_decay) for v, m in parts]
            self.steps[phase] = loop.make_train_step(strategy, self.trained, self.groups[phase])
        self.predict = make_predict(self.model)

    def set_phase(self, phase: str) -> None:
        models.set_body_trainable(self.model, phase == "unfrozen", always_trainable=self.fresh)
        if self.p.method == "lp_ft":  # the probe was fitted on inference-mode batch norm: fine-tune on the same
            for layer in batch_norm_stats.trainable_batch_norm_layers(self.model):
                layer.trainable = False  # moving statistics and affine frozen; Keras then calls it in inference mode

    def reset(self, fold_seed: int) -> None:
        loop.restore(self.trained.variables, self.initial)
        for v in self.trained.variables:  # a different dropout stream per fold
            if "seed_generator_state" in v.path:
                v.assign(tf.cast([fold_seed, 0], v.dtype))
        for groups in self.groups.values():
            for g in groups:
                g.reset()

    def state_variables(self, phase: str) -> list[tf.Variable]:
        return list(self.trained.variables) + [v for g in self.groups[phase] for v in g.state_variables()]


def _save_checkpoint(path: Path, variables) -> None:
    with files.atomic_open(path, "wb") as handle:
        np.savez(handle, *[v.numpy() for v in variables])


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


def lr_sweep(session: Session, phase: str, batches: Iterator, p: TrainParams) -> tuple[float, dict]:
    """fastai's LR finder for `phase`: `p.lr_finder_steps` training steps on `batches` (distributed
    batches, as `strategy.distribute_datasets_from_function` yields them) at exponentially growing rates
    from `p.lr_finder_start` to `p.lr_finder_end`, beta_1 0.9. The model and the phase's optimizer state
    are restored afterwards. Returns (valley suggestion, curve); the curve holds the suggestion too."""
    session.set_phase(phase)
    groups, step = session.groups[phase], session.steps[phase]
    start = loop.snapshot(session.state_variables(phase))

    def sweep_step(lr):
        for g in groups:
            g.optimizer.learning_rate.assign(lr)
            g.beta_1.assign(0.9)
        return step(next(batches))[0]

    curve = lr_finder.sweep(sweep_step, p.lr_finder_steps, p.lr_finder_start, p.lr_finder_end)
    lr = lr_finder.suggest(curve)
    loop.restore(session.state_variables(phase), start)
    return lr, curve


class _FoldBatches:
    """Every batch of one fold's training rows: a pure function of (seed, fold, phase, epoch)."""

    def __init__(self, session: Session, fold: int, train: input_pipeline.Examples, fold_seed: int):
        p, strategy = session.p, session.strategy
        self.p, self.strategy, self.fold, self.labels = p, strategy, fold, train.labels
        self.aux = train.aux if train.aux.shape[1] else None  # (N, K) auxiliary targets, if any
        self.weights = rebalance.example_weights(train.labels, p.rebalance)
        self.steps = input_pipeline.steps_per_epoch(len(train), p.batch_size)
        self.global_batch = (p.batch_size if len(train) >= p.batch_size
                             else len(train) - len(train) % strategy.num_replicas_in_sync)
        streamed = isinstance(train.images, input_pipeline.StreamedImages)
        self.images = train.images if streamed else tf.constant(train.images)
        self.augment_fn = augment.make_dataset_augment_fn(p.augmentation, fold_seed % 100_000)
        self.resample = p.rebalance == "resample"
        self.target = (1 - p.resample_target, p.resample_target)

    def epochs(self, phase: str, epochs: range, num_steps: int) -> Iterator:
        """One distributed stream of `num_steps` batches for each epoch in `epochs`, in order."""
        seeds = [epoch_seed(self.p.seed, self.fold, phase, epoch) for epoch in epochs]
        return iter(self.strategy.distribute_datasets_from_function(
            lambda ctx: input_pipeline.train_dataset(
                self.images, self.labels, self.weights, global_batch=self.global_batch, steps=num_steps,
                seeds=seeds, augment_fn=self.augment_fn, resample=self.resample, input_context=ctx,
                target=self.target, aux=self.aux)))


def new_state() -> dict[str, Any]:
    return {"completed": {phase: 0 for phase in PHASES}, "lr": {}, "checkpoint": None, "history": [],
            "fed_counts": [0, 0], "timings": {}, "train_images": 0}


def phase_epochs(p: TrainParams, phase: str) -> int:
    """LP-FT has no frozen phase: its linear probe is what the frozen phase's head training stands for."""
    if phase == "frozen":
        return 0 if p.method == "lp_ft" else p.epochs_frozen
    return p.epochs_unfrozen


def _train_epoch(session: Session, phase: str, batches: Iterator, cycle: schedule.OneCycle, first_step: int):
    """One epoch of one-cycle steps; (batch losses, labels fed, logits of what was fed)."""
    groups, step = session.groups[phase], session.steps[phase]
    losses, fed_logits, fed_labels = [], [], []
    for i, batch in enumerate(batches):
        lr, beta_1 = cycle(first_step + i)
        for g in groups:
            g.set(lr, beta_1)
        loss, logits, labels = step(batch)
        losses.append(float(loss))
        fed_logits.append(logits.numpy())
        fed_labels.append(labels.numpy())
    return losses, np.concatenate(fed_labels), np.concatenate(fed_logits)


def _epoch_row(p: TrainParams, phase: str, epoch: int, lr_max: float, losses, fed_labels, fed_logits,
               counter: rebalance.FedCounter, validation: Mapping[str, float]) -> dict[str, Any]:
    """The history row of one epoch: training loss (with any auxiliary heads' share) and the death metrics of
    what was fed with a survival label, then validation."""
    offset = phase_epochs(p, "frozen") if phase == "unfrozen" else 0
    known = fed_labels >= 0
    fed = metrics.binary_metrics(fed_labels[known], fed_logits[known], "train")
    return {"phase": phase, "epoch": epoch, "global_epoch": epoch + offset,
            "lr_max": lr_max, "train_loss": float(np.mean(losses)),
            "fed_positive_fraction": counter.positive_fraction,
            **{k: v for k, v in fed.items() if k != "train_loss"},
            **validation}


class _FoldRun:
    """One fold's training from its persistent state: resume, LR sweeps, epochs, checkpoints, the result."""

    def __init__(self, session: Session, fold: int, train: input_pipeline.Examples, val: input_pipeline.Examples,
                 work_dir: Path, on_epoch, log):
        self.session, self.p, self.fold, self.train, self.val = session, session.p, fold, train, val
        self.work_dir, self.on_epoch, self.log = work_dir, on_epoch, log
        self.chief = strat.is_chief(session.strategy)
        state_path = work_dir / STATE
        self.state = json.loads(state_path.read_text()) if state_path.is_file() else new_state()
        self.timings = self.state["timings"]
        self.last_checkpoint = time.monotonic()
        self.live = outputs.LiveScalars(work_dir / outputs.LIVE_TENSORBOARD_DIR) if self.chief else None

    def save_state(self) -> None:
        if self.chief:
            files.write_json_atomic(self.work_dir / STATE, self.state)

    def resume(self, fold_seed: int) -> None:
        """The fold's initial model (LP-FT: its head from the fold's probe), then the last checkpoint's
        variables if there is one."""
        self.session.reset(fold_seed)
        checkpoint = self.state["checkpoint"]
        if self.p.method == "lp_ft" and not checkpoint:
            self.init_head_from_probe()
        if checkpoint:
            phase_of_ckpt = checkpoint.split("-")[1]
            _load_checkpoint(self.work_dir / checkpoint, self.session.state_variables(phase_of_ckpt))
            self.log(f"fold {self.fold}: resumed from {checkpoint}")

    def init_head_from_probe(self) -> None:
        """LP-FT's start: the linear probe of this fold's training rows (linear_probe's rule for C) as the head."""
        known = self.train.labels >= 0  # rows with only auxiliary targets do not fit the death probe
        x = linear_probe.features(self.session.features, self.train.images, self.p.eval_batch_size)
        probe = linear_probe.fit(x[known], self.train.labels[known], self.train.patients[known], self.p.rebalance,
                                 self.p.seed + self.fold)
        linear_probe.set_head(self.session.model, probe)
        self.state["probe"] = probe.record()
        self.log(f"fold {self.fold}: LP-FT head from the linear probe (C = {probe.c:.3g})")

    def find_lr(self, phase: str, batches: _FoldBatches) -> float:
        """The phase's learning rate: swept once (on its own batches), then kept in the state."""
        if phase not in self.state["lr"]:
            with _Timer(self.timings, f"lr_sweep_{phase}"):
                sweep_batches = batches.epochs(f"lr_{phase}", range(1), self.p.lr_finder_steps)
                lr, curve = lr_sweep(self.session, phase, sweep_batches, self.p)
            self.state["lr"][phase] = {"suggestion": lr, "steps_run": len(curve["lrs"]), "curve": curve}
            if self.live:
                self.live.lr_curve(phase, curve)
            self.log(f"fold {self.fold}: LR finder ({phase}) suggests {lr:.3g} after {len(curve['lrs'])} steps")
            self.save_state()
        return self.state["lr"][phase]["suggestion"]

    def train_phase(self, phase: str, batches: _FoldBatches) -> None:
        """The phase's remaining epochs of its one-cycle schedule (nothing when it is complete)."""
        epochs = phase_epochs(self.p, phase)
        if self.state["completed"][phase] >= epochs:
            return
        self.session.set_phase(phase)
        lr_max = self.find_lr(phase, batches)
        cycle = schedule.OneCycle(epochs * batches.steps, lr_max, self.p.pct_start, self.p.div, self.p.div_final)
        remaining = range(self.state["completed"][phase], epochs)
        with _Timer(self.timings, phase):
            stream = batches.epochs(phase, remaining, batches.steps)
        for epoch in remaining:
            with _Timer(self.timings, phase):
                losses, fed_labels, fed_logits = _train_epoch(
                    self.session, phase, itertools.islice(stream, batches.steps), cycle, epoch * batches.steps)
            counter = rebalance.FedCounter()
            counter.add(fed_labels)
            self.state["fed_counts"] = [int(a + b) for a, b in zip(self.state["fed_counts"], counter.counts)]
            self.state["train_images"] += len(fed_labels)
            with _Timer(self.timings, "validation"):
                validation = self.validate(self.val_logits())
            row = _epoch_row(self.p, phase, epoch, lr_max, losses, fed_labels, fed_logits, counter, validation)
            self.state["history"].append(row)
            self.on_epoch(row)
            if self.live:
                self.live.epoch(row)
            if epoch + 1 == epochs or time.monotonic() - self.last_checkpoint >= self.p.checkpoint_every_s:
                self.checkpoint(phase, epoch)

    def validate(self, logits: np.ndarray) -> dict[str, float]:
        return validation_metrics(self.val, logits)

    def val_logits(self) -> np.ndarray:
        return loop.predict_logits(self.session.predict, self.val.images, self.p.eval_batch_size)

    def checkpoint(self, phase: str, epoch: int) -> None:
        """The variables after `epoch` of `phase`, then the state naming them; the previous checkpoint goes."""
        name = f"ckpt-{phase}-{epoch:03d}.npz"
        if self.chief:
            _save_checkpoint(self.work_dir / name, self.session.state_variables(phase))
        previous, self.state["checkpoint"] = self.state["checkpoint"], name
        self.state["completed"][phase] = epoch + 1
        self.save_state()
        if self.chief and previous and previous != name:
            (self.work_dir / previous).unlink(missing_ok=True)
        self.last_checkpoint = time.monotonic()

    def recompute_batch_norm(self, global_batch: int) -> int:
        """With `recompute_batch_norm`, the moving statistics from the training images; layers recomputed."""
        if not self.p.recompute_batch_norm:
            return 0
        # The trainable flags of the last phase that ran (a finished fold resumed here ran none).
        self.session.set_phase("unfrozen" if self.p.epochs_unfrozen else "frozen")
        with _Timer(self.timings, "batch_norm_stats"):
            recomputed = batch_norm_stats.recompute(self.session.model, self.train.images, global_batch)
        self.log(f"fold {self.fold}: batch-norm statistics of {recomputed} layers recomputed on "
                 f"{len(self.train)} training images")
        return recomputed

    def result(self, batches: _FoldBatches, recomputed: int, val_logits: np.ndarray) -> dict[str, Any]:
        """The fold's record: val_* of the model as saved (after any recomputed statistics), train_* of its
        last epoch."""
        state = self.state
        final = {**(state["history"][-1] if state["history"] else {}), **self.validate(val_logits)}
        return {"fold": self.fold, "num_train": len(self.train), "num_val": len(self.val),
                "steps_per_epoch": batches.steps, "global_batch": batches.global_batch,
                "lr": {k: v["suggestion"] for k, v in state["lr"].items()},
                "lr_steps_run": {k: v["steps_run"] for k, v in state["lr"].items()},
                "final": final, "batch_norm_layers_recomputed": recomputed, "fed_counts": state["fed_counts"],
                "timings": self.timings, "train_images": state["train_images"],
                "weights": weights_description(self.session.report),
                **({"probe": state["probe"]} if "probe" in state else {})}

    def finish(self, result: Mapping[str, Any], val_logits: np.ndarray) -> None:
        """The fold's outputs and `done.json`; the last checkpoint is no longer needed."""
        if not self.chief:
            return
        self.live.close()
        state = self.state
        outputs.write_fold(self.work_dir / outputs.RESULT_DIR, self.fold, self.session.model, state["history"],
                           {phase: entry["curve"] for phase, entry in state["lr"].items()},
                           outputs.prediction_rows(self.val, metrics.sigmoid(val_logits)), result)
        files.write_json_atomic(self.work_dir / DONE, result)
        if state["checkpoint"]:
            (self.work_dir / state["checkpoint"]).unlink(missing_ok=True)


def run_fold(session: Session, fold: int, train: input_pipeline.Examples, val: input_pipeline.Examples,
             work_dir: Path, on_epoch=lambda row: None, log=print) -> dict[str, Any]:
    """Train one fold (or resume it); returns its result record (also in `work_dir/done.json`)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    if (work_dir / DONE).is_file():
        return json.loads((work_dir / DONE).read_text())
    files.remove_stale_tmp(work_dir)  # a checkpoint or state half-written by a killed run
    run = _FoldRun(session, fold, train, val, work_dir, on_epoch, log)
    fold_seed = epoch_seed(session.p.seed, fold, "fold", 0)
    run.resume(fold_seed)
    batches = _FoldBatches(session, fold, train, fold_seed)
    for phase in PHASES:
        run.train_phase(phase, batches)
    recomputed = run.recompute_batch_norm(batches.global_batch)
    val_logits = run.val_logits()
    result = run.result(batches, recomputed, val_logits)
    run.finish(result, val_logits)
    return result


def validation_metrics(val: input_pipeline.Examples, logits: np.ndarray) -> dict[str, float]:
    """val_* on observed labels (folds validate observed rows only: `in_fold_imputation`)."""
    observed = val.label_sources == "observed"
    return metrics.binary_metrics(val.labels[observed], logits[observed], "val")


def weights_description(report) -> str:
    """What the body started from (a WeightLoadReport, None without weights), as every report must quote it."""
    if report is None:
        return "no pretrained weights (--weights not given): training from scratch"
    return report.summary()
