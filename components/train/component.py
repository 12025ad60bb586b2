"""The train stage: the study's 5-fold cross-validated fine-tuning for one variant (or, with
`--method=linear_probe`, a logistic regression on the frozen body's features: `linear_probe`).

Inputs: the tfrecords artifact. Outputs: one folder per fold (model, history,
out-of-fold predictions, LR-finder curves and plots, TensorBoard scalars) and
the summary (fold means, fed class ratio, timings); `outputs` names every file.
With `repeats` > 1 the K folds are drawn again for each repeat (`splits`) and
every repeat's folds are trained; fold k of every repeat trains with fold k's
seeds, so repeats differ in their split only. `--split=site` holds out one
site group per fold (`splits.site_folds`), however many `--folds` asks for.

The imputed variants' unlabelled rows train in every fold with labels of
the imputation forest fitted on that fold's observed training labels
(`in_fold_imputation`), never on a validation patient's outcome; folds
are drawn on the observed rows, so validation holds observed labels only.

Caching is per fold: each fold trains in a persistent work folder named by
the hash of its own parameters (the hyperparameters that change what it
computes, the code version and the ids, image hashes and labels of its
training and validation rows), so a re-run, a killed run or a run with an
unrelated flag changed (e.g. `--strategy`, or impute settings for an
`original` variant) reuses finished folds and resumes unfinished ones.

Folds train side by side: `--parallel_folds=N` starts N - 1 helper
processes beside this one, and machines sharing `--output_dir` share the
work folder. Each fold trains under a lock (`fold_lock`), so whoever claims
it first trains it and the others, once it is released, read its result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tensorflow as tf
import tqdm

import models
from common import files
from common.errors import PipelineError
from components import base
from components.train import (aux_targets, fold as fold_lib, fold_lock, in_fold_imputation, input_pipeline,
                              linear_probe, outputs, probe_fold, splits, strategy as strat)
from components.train import params as params_lib
from tfrecords import schema, writer



def _weights_sha(path: str | None) -> str | None:
    return files.sha256_file(Path(path)) if path else None


def _shuffle_buffer(p: fold_lib.TrainParams, train: input_pipeline.Examples) -> int:
    """What decides the batches: all the rows (in memory, or streamed through a buffer that holds them all),
    or the smaller buffer they streamed through."""
    streamed = isinstance(train.images, input_pipeline.StreamedImages)
    return min(len(train), p.shuffle_buffer) if streamed else len(train)


def fold_key(p: fold_lib.TrainParams, precision: str, train: input_pipeline.Examples,
             val: input_pipeline.Examples, fold: int, repeat: int = 0) -> str:
    """The hash naming a fold's work folder; repeat 0 leaves the repeat out, so it is the single split's key."""
    params = {k: v for k, v in dataclasses.asdict(p).items() if k in params_lib.FOLD_KEY_FIELDS}
    payload = {
        "code": SPEC.code_version(), "params": params, "precision": precision, "fold": fold,
        "shuffle_buffer": _shuffle_buffer(p, train),
        "weights_sha256": _weights_sha(p.weights),
        "train": sorted(zip(train.source_ids.tolist(), train.sha256.tolist(), train.labels.tolist())),
        "val": sorted(zip(val.source_ids.tolist(), val.sha256.tolist(), val.labels.tolist(),
                          val.label_sources.tolist())),
    }
    if train.aux.shape[1]:
        payload["train_aux"] = sorted(zip(train.source_ids.tolist(), train.aux.tolist()))
    if repeat:
        payload["repeat"] = repeat
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _link_tree(src: Path, dst: Path) -> None:
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=link)


def _start(p: fold_lib.TrainParams) -> tuple[tf.distribute.Strategy, str]:
    if p.deterministic:
        tf.config.experimental.enable_op_determinism()
    return strat.get_strategy(p.strategy), strat.resolve_precision(p.precision)


def _plan(p: fold_lib.TrainParams, precision: str, tfrecords: Path, work_dir: Path, log=lambda line: None):
    """The rows and, per repeat and fold, (repeat, fold, training rows, validation rows, its work folder)."""
    manifest = writer.load_manifest(tfrecords)
    missing = manifest.get("imputation_missing_columns")
    if missing and p.labels == "observed+imputed":
        raise PipelineError(f"--variant={p.variant} trains on imputed labels, but imputation was not possible: the "
                            f"data has no column(s) {', '.join(missing)}; give them, or train an original* variant")
    if p.labels == "observed+imputed" and not set(schema.CLINICAL_KEYS) <= set(manifest.get("features", ())):
        raise PipelineError(f"--variant={p.variant} imputes inside each training fold, but {tfrecords} was written "
                            f"without the forest's features ({', '.join(schema.CLINICAL_KEYS)}); write it anew")
    if p.split == "site" and "patient/site" not in manifest.get("features", ()):
        raise PipelineError(f"--split=site: {tfrecords} was written without the patients' sites (patient/site); "
                            "write it anew")
    aux_names = aux_targets.parse(p.aux_targets)
    if aux_names:
        _check_aux_targets(p, manifest, tfrecords)
    examples = input_pipeline.load_examples(tfrecords, p.labels, p.image_size, p.memory_budget_gb, p.shuffle_buffer,
                                            aux_names)
    aux_targets.check_known(aux_names, examples.aux)
    if isinstance(examples.images, input_pipeline.StreamedImages):
        log(f"train: {len(examples)} images past --memory_budget_gb={p.memory_budget_gb:g} as float32: "
            f"streamed from the TFRecords (shuffle buffer {p.shuffle_buffer})")
    repeated = in_fold_imputation.make_repeated_folds(examples, p.split, p.folds, p.seed, p.repeats,
                                                      p.min_site_patients)
    if p.split == "site":
        log(f"train: --split=site: {len(repeated[0])} folds, one per site group ("
            f"{', '.join(site_of_fold(p, examples))}); --folds={p.folds} is ignored")
    plan = []
    for r, folds in enumerate(repeated):
        for k, (train_idx, val_idx) in enumerate(folds):
            train = examples.subset(train_idx)
            if p.labels == "observed+imputed":
                train = in_fold_imputation.impute_training_labels(train, p.seed, p.imputation_trees)
            val = examples.subset(val_idx)
            plan.append((r, k, train, val, work_dir / f"fold-{fold_key(p, precision, train, val, k, r)[:16]}"))
    return examples, plan


def _check_aux_targets(p: fold_lib.TrainParams, manifest: Mapping[str, Any], tfrecords: Path) -> None:
    """What --aux_targets cannot be combined with, each named."""
    if p.method == "linear_probe":
        raise PipelineError("--aux_targets with --method=linear_probe: the probe fits death alone; use fine_tune or "
                            "lp_ft")
    if p.rebalance == "resample":
        raise PipelineError(f"--aux_targets with --variant={p.variant}: rejection resampling needs a survival label "
                            "on every row it draws; use a variant without resampling")
    if not set(schema.CLINICAL_KEYS) <= set(manifest.get("features", ())):
        raise PipelineError(f"--aux_targets: {tfrecords} was written without the clinical flags "
                            f"({', '.join(schema.CLINICAL_KEYS)}); write it anew")
    missing = set(aux_targets.parse(p.aux_targets)) & set(manifest.get("imputation_missing_columns") or ())
    if missing:
        raise PipelineError(f"--aux_targets: the data has no column(s) {', '.join(sorted(missing))}")


def site_of_fold(p: fold_lib.TrainParams, examples: input_pipeline.Examples) -> list[str] | None:
    """Under --split=site, the site group each fold holds out, fold by fold; else None."""
    return in_fold_imputation.site_folds(examples, p.min_site_patients)[1] if p.split == "site" else None


def _repeat_prefix(p: fold_lib.TrainParams, r: int) -> str:
    return f"repeat {r + 1}/{p.repeats} " if p.repeats > 1 else ""


def _train_folds(p, strategy, precision, rows: int, plan, on_epoch, log,
                 on_first_claim=lambda: None) -> dict[tuple[int, int], dict[str, Any]]:
    """Every fold of `plan`, each under its lock (`fold_lock`): first the folds no other process holds,
    then, waiting for their holders, the others. A fold another process finished is read, not trained.
    `on_first_claim` runs once this process holds its first fold (or found none free)."""
    session = None
    results = {}
    for wait in (False, True):
        for r, k, train, val, wd in plan:
            if (r, k) in results:
                continue
            prefix = _repeat_prefix(p, r)
            with fold_lock.claim(wd, wait=wait, log=log) as claimed:
                if claimed or wait:
                    on_first_claim()
                if not claimed:
                    continue
                if (wd / fold_lib.DONE).is_file():
                    results[r, k] = json.loads((wd / fold_lib.DONE).read_text())
                    log(f"{prefix}fold {k}: reused finished fold {wd.name}")
                    continue
                if session is None:
                    session = fold_lib.Session(p, strategy, precision)
                    log(f"train: {p.variant}, split={p.split}, precision={precision}, "
                        f"strategy={type(strategy).__name__} ({strategy.num_replicas_in_sync} replica(s)), "
                        f"{rows} rows\n  {fold_lib.weights_description(session.report)}")
                results[r, k] = fold_lib.run_fold(session, k, train, val, wd,
                                                  on_epoch=lambda row, r=r, k=k: on_epoch(r, k, row),
                                                  log=lambda line, prefix=prefix: log(prefix + line))
    return results


def train_folds_in_helper(tfrecords: str, params: Mapping[str, Any], fold_dirs: list[str], claimed) -> None:
    """A `--parallel_folds` helper process: the same folds, in the work folders the parent named (its code
    version keyed them), taken by the same locks; sets the event `claimed` once it holds its first fold."""
    p = fold_lib.TrainParams(**params)
    strategy, precision = _start(p)
    examples, plan = _plan(p, precision, Path(tfrecords), Path(fold_dirs[0]).parent)
    plan = [(r, k, train, val, Path(wd)) for (r, k, train, val, _), wd in zip(plan, fold_dirs)]
    _train_folds(p, strategy, precision, len(examples), plan, on_epoch=lambda r, k, row: None,
                 log=lambda line: print(f"[helper pid {os.getpid()}] {line}", flush=True), on_first_claim=claimed.set)


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path,
        work_dir: Path) -> Mapping[str, Any]:
    p = fold_lib.TrainParams(**params)
    if p.parallel_folds > 1 and p.strategy == "multi_worker":
        raise PipelineError("--parallel_folds > 1 with --strategy=multi_worker: the workers of one strategy train "
                            "one fold together; give one of the two")
    strategy, precision = _start(p)
    examples, plan = _plan(p, precision, inputs["tfrecords"].path, work_dir, log=tqdm.tqdm.write)
    if p.method == "linear_probe":
        return _run_probes(p, plan, examples, out_dir)

    epochs_per_fold = sum(fold_lib.phase_epochs(p, phase) for phase in fold_lib.PHASES)
    done_epochs = 0
    for *_, wd in plan:
        state = wd / fold_lib.STATE
        if (wd / fold_lib.DONE).is_file():
            done_epochs += epochs_per_fold
        elif state.is_file():
            done_epochs += sum(json.loads(state.read_text())["completed"].values())
    bar = tqdm.tqdm(total=len(plan) * epochs_per_fold, initial=done_epochs, unit="epoch", desc="train",
                    dynamic_ncols=True, file=sys.stdout, mininterval=0.5)

    def on_epoch(r, k, row):
        bar.update(1)
        bar.set_description(f"train {_repeat_prefix(p, r)}fold {k + 1}/{len(plan) // p.repeats}")
        bar.set_postfix_str(f"{row['phase']} ep {row['epoch'] + 1} loss {row['train_loss']:.3f} "
                            f"val_auc {row.get('val_auc', float('nan')):.3f}")

    # One helper per fold still to train beyond this process's own, at most parallel_folds - 1. Spawned, not
    # forked: a fork of a process running TensorFlow's thread pools can deadlock. This process starts once each
    # helper holds a fold (or gave up), so the first folds go one to each process, whatever their start-up takes.
    unfinished = sum(not (wd / fold_lib.DONE).is_file() for *_, wd in plan)
    context = multiprocessing.get_context("spawn")
    claimed = [context.Event() for _ in range(min(p.parallel_folds, unfinished) - 1)]
    helpers = [context.Process(target=train_folds_in_helper, args=(str(inputs["tfrecords"].path), dict(params),
                                                                   [str(wd) for *_, wd in plan], event))
               for event in claimed]
    for helper in helpers:
        helper.start()
    for helper, event in zip(helpers, claimed):
        while not event.wait(timeout=1.0) and helper.is_alive():
            pass
    try:
        by_fold = _train_folds(p, strategy, precision, len(examples), plan, on_epoch, log=tqdm.tqdm.write)
    finally:
        for helper in helpers:
            helper.join()
        bar.close()
    for helper in helpers:
        if helper.exitcode:
            tqdm.tqdm.write(f"train: helper pid {helper.pid} exited with status {helper.exitcode}; "
                            f"this process trained what it left")
    results = []
    for r, k, _, _, wd in plan:
        _link_tree(wd / outputs.RESULT_DIR, outputs.fold_dir(outputs.repeat_dir(out_dir, r), k))
        results.append({**by_fold[r, k], "repeat": r, "work_dir": str(wd)})
    summary = _summarise(p, precision, strategy, results, examples)
    outputs.write_summary(out_dir, summary)
    return {k: v for k, v in summary["counts"].items()}


def _run_probes(p: fold_lib.TrainParams, plan, examples, out_dir: Path) -> Mapping[str, Any]:
    """Every fold's linear probe on the body's frozen features (float32, no augmentation)."""
    classifier, report = models.build_classifier(p.arch, p.image_size, weights=p.weights, weights_mode=p.weights_mode)
    extractor = linear_probe.feature_model(classifier)
    weights = fold_lib.weights_description(report)
    tqdm.tqdm.write(f"train: {p.variant}, split={p.split}, linear probe ({linear_probe.SEARCH_RULE}), "
                    f"{len(examples)} rows\n  {weights}")
    results = []
    for r, k, train, val, wd in tqdm.tqdm(plan, desc="linear probe", unit="fold", file=sys.stdout):
        result = probe_fold.run_fold(classifier, extractor, k, train, val, p, wd, weights)
        repeat = f"repeat {r + 1}/{p.repeats} " if p.repeats > 1 else ""
        tqdm.tqdm.write(f"{repeat}fold {k}: C = {result['c']:.3g}, validation AUC {result['final']['val_auc']:.3f}")
        _link_tree(wd / outputs.RESULT_DIR, outputs.fold_dir(outputs.repeat_dir(out_dir, r), k))
        results.append({**result, "repeat": r, "work_dir": str(wd)})
    summary = _summarise(p, "fp32", tf.distribute.get_strategy(), results, examples)
    outputs.write_summary(out_dir, summary)
    return dict(summary["counts"])


def _summarise(p, precision, strategy, results, examples) -> dict[str, Any]:
    weights = sorted({r["weights"] for r in results})
    if len(weights) != 1:
        raise PipelineError(f"train: folds started from different weights: {weights}")
    finals = [r["final"] for r in results]
    keys = sorted({k for f in finals for k in f if k.startswith(("val", "train_")) and isinstance(f[k], float)})
    means = {k: float(np.nanmean([f.get(k, math.nan) for f in finals])) for k in keys}
    fed = np.sum([r["fed_counts"] for r in results], axis=0).tolist()
    timings = {}
    for r in results:
        for k, v in r["timings"].items():
            timings[k] = timings.get(k, 0.0) + v
    train_time = timings.get("frozen", 0.0) + timings.get("unfrozen", 0.0)
    target = p.resample_target if p.rebalance == "resample" else None
    return {
        "variant": p.variant, "labels": p.labels, "rebalance": p.rebalance, "split": p.split,
        "precision": precision, "strategy": type(strategy).__name__, "weights": weights[0],
        "params": dataclasses.asdict(p), "folds": results, "mean_final_metrics": means,
        "split_seeds": [splits.repeat_seed(p.seed, r) for r in range(p.repeats)],
        "site_of_fold": site_of_fold(p, examples),
        "fed_counts": fed, "fed_positive_fraction": fed[1] / max(1, sum(fed)), "resample_target": target,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "train_images_per_s": sum(r["train_images"] for r in results) / train_time if train_time else None,
        "note": ("val_* = observed labels only; an imputed variant's imputed labels are fitted inside each "
                 "training fold"),
        "counts": {"folds": len(results) // p.repeats, "repeats": p.repeats, "rows": len(examples),
                   "precision": precision,
                   **_trained_only(p, examples),
                   **{f"mean_{k}": round(v, 4) for k, v in means.items() if k in ("val_auc", "val_bacc", "val_loss")},
                   "fed_positive_fraction": round(fed[1] / max(1, sum(fed)), 4)},
    }


def _trained_only(p: fold_lib.TrainParams, examples: input_pipeline.Examples) -> dict[str, int]:
    """The rows that train in every fold but are never validated (imputed labels; with --aux_targets, rows
    with an auxiliary target and no survival label), and their patients that have no observed row: what the
    model card adds to the validated rows."""
    observed = examples.label_sources == "observed"
    imputed = ~observed & (examples.labels >= 0) if p.labels == "observed+imputed" else np.zeros(len(examples), bool)
    aux_only = ~observed & ~imputed
    patients = set(examples.patients[~observed]) - set(examples.patients[observed])
    return {"imputed_rows": int(imputed.sum()), "aux_only_rows": int(aux_only.sum()),
            "trained_only_patients": len(patients)}


def _summary(artifact: base.Artifact) -> str:
    c = artifact.counts
    repeats = f" x {c['repeats']} repeats" if c.get("repeats", 1) > 1 else ""
    return (f"{c['folds']} folds{repeats}, {c['rows']} rows, {c['precision']}: "
            f"mean val AUC {c.get('mean_val_auc', math.nan):.3f}, balanced acc {c.get('mean_val_bacc', math.nan):.3f}; "
            f"fed positive fraction {c['fed_positive_fraction']:.3f}")


SPEC = base.ComponentSpec(
    name="train", run=run, summary=_summary, uses_work_dir=True,
)
