"""The train stage's output layout: every file name, the writers and the readers, in one place.

A train artifact holds `train_summary.json` (fold means, fed class ratio,
timings, the parameters) and one `fold_<k>/` folder per fold:

    model.keras                     the fold's model as saved (after any recomputed batch-norm statistics)
    history.csv, history.json       one row per epoch
    predictions.csv, predictions.json
                                    the fold's out-of-fold predictions: source_id, patient, label,
                                    label_source, probability
    lr_find_<phase>.json, .png      each phase's LR-finder curve and its plot
    tensorboard/                    the history and LR curves as TensorBoard scalars
    fold.json                       the fold's result record

With repeated cross-validation (`--repeats=R`), repeat 0 is the layout above
(the single split: export, the study's tables and evaluate's fold metrics read
it) and each repeat r > 0 has the same `fold_<k>/` folders under `repeat_<r>/`.

A fold writes this folder as `result/` inside its work folder; the stage links
it into the artifact as `fold_<k>/`. While it trains, the same scalars go,
epoch by epoch, to `tensorboard_live/` in its work folder (`tensorboard
--logdir <output_dir>/train/work` follows a run; a resumed fold appends the
epochs it re-runs in a new events file). Downstream stages (evaluate, export, the
study) read it only through the functions here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from common import files
from components.train.params import TrainParams

SUMMARY = "train_summary.json"
FOLD_PREFIX = "fold_"
REPEAT_PREFIX = "repeat_"
RESULT_DIR = "result"  # inside a fold's work folder; linked into the artifact as fold_<k>
MODEL = "model.keras"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
PREDICTIONS_CSV = "predictions.csv"
PREDICTIONS_JSON = "predictions.json"
LR_FIND_PREFIX = "lr_find_"
TENSORBOARD_DIR = "tensorboard"
LIVE_TENSORBOARD_DIR = "tensorboard_live"  # inside a fold's work folder, written during training
FOLD_RECORD = "fold.json"
PREDICTION_COLUMNS = ("source_id", "patient", "label", "label_source", "probability")


# ---------------------------------------------------------------- paths
def fold_dir(train_dir: Path, fold: int) -> Path:
    return Path(train_dir) / f"{FOLD_PREFIX}{fold}"


def fold_dirs(train_dir: Path) -> list[tuple[int, Path]]:
    """(k, folder) of every `fold_<k>/` in the artifact, in fold order."""
    folds = [(int(p.name[len(FOLD_PREFIX):]), p) for p in Path(train_dir).glob(f"{FOLD_PREFIX}*") if p.is_dir()]
    return sorted(folds)


def fold_glob(name: str) -> str:
    """A glob, relative to the artifact, matching file `name` of every fold (e.g. 'fold_*/predictions.csv')."""
    return f"{FOLD_PREFIX}*/{name}"


def repeat_fold_glob(name: str) -> str:
    """As `fold_glob`, for the folds of the repeats after the first ('repeat_*/fold_*/predictions.csv')."""
    return f"{REPEAT_PREFIX}*/{fold_glob(name)}"


def repeat_dir(train_dir: Path, repeat: int) -> Path:
    """The folder holding repeat `repeat`'s `fold_<k>/`: the artifact itself for repeat 0, `repeat_<r>/` after it."""
    return Path(train_dir) if repeat == 0 else Path(train_dir) / f"{REPEAT_PREFIX}{repeat}"


def model_path(train_dir: Path, fold: int) -> Path:
    return fold_dir(train_dir, fold) / MODEL


def fold_model_paths(train_dir: Path) -> list[Path]:
    """Every fold's `model.keras`, unordered (as found)."""
    return list(Path(train_dir).glob(fold_glob(MODEL)))


def lr_curve_name(phase: str, suffix: str) -> str:
    return f"{LR_FIND_PREFIX}{phase}{suffix}"


# ---------------------------------------------------------------- writers
def prediction_rows(val, probabilities: np.ndarray) -> list[dict[str, Any]]:
    """One row per validation image of `val` (input_pipeline.Examples), as the predictions files hold them."""
    return [{"source_id": s, "patient": pt, "label": int(lb), "label_source": src, "probability": float(pr)}
            for s, pt, lb, src, pr in zip(val.source_ids, val.patients, val.labels, val.label_sources,
                                          probabilities)]


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str]) -> None:
    with open(path, "w", newline="") as handle:
        w = csv.DictWriter(handle, fieldnames=list(fieldnames))
        w.writeheader()
        w.writerows(rows)


def _scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar through TF core's `tf.summary.write` (the tensorboard package is not needed)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata.SerializeToString())


def _epoch_scalars(row: Mapping[str, Any]) -> None:
    for key, value in row.items():
        if isinstance(value, float) and math.isfinite(value):
            _scalar(key, value, row["global_epoch"])


def _lr_curve_scalars(phase: str, curve: Mapping[str, Any]) -> None:
    for i, loss in enumerate(curve["losses"]):
        if math.isfinite(loss):
            _scalar(f"{LR_FIND_PREFIX}{phase}/smoothed_loss", loss, i)


def _write_tensorboard(folder: Path, history: Sequence[Mapping[str, Any]], lr_curves: Mapping[str, Mapping]) -> None:
    import tensorflow as tf
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for row in history:
            _epoch_scalars(row)
        for phase, curve in lr_curves.items():
            _lr_curve_scalars(phase, curve)
    writer.close()


class LiveScalars:
    """TensorBoard scalars of a fold as it trains: each LR curve and epoch row flushed when it is known."""

    def __init__(self, folder: Path):
        import tensorflow as tf
        self.writer = tf.summary.create_file_writer(str(folder))

    def epoch(self, row: Mapping[str, Any]) -> None:
        with self.writer.as_default():
            _epoch_scalars(row)
        self.writer.flush()

    def lr_curve(self, phase: str, curve: Mapping[str, Any]) -> None:
        with self.writer.as_default():
            _lr_curve_scalars(phase, curve)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_fold(out: Path, fold: int, model, history: Sequence[Mapping[str, Any]], lr_curves: Mapping[str, Mapping],
               predictions: Sequence[Mapping[str, Any]], result: Mapping[str, Any]) -> None:
    """A fold's folder: `lr_curves` is {phase: curve as lr_finder.sweep returns it}, `predictions` as
    `prediction_rows` builds them, `result` the fold's record."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL)
    if history:
        _write_csv(out / HISTORY_CSV, history, dict.fromkeys(k for row in history for k in row))
    files.write_json_atomic(out / HISTORY_JSON, history)
    _write_csv(out / PREDICTIONS_CSV, predictions, list(predictions[0]) if predictions else ["source_id"])
    files.write_json_atomic(out / PREDICTIONS_JSON, predictions)
    for phase, curve in lr_curves.items():
        files.write_json_atomic(out / lr_curve_name(phase, ".json"), curve)
        label = f"fold {fold}, body {phase}"
        plot_lr_curves({label: curve}, out / lr_curve_name(phase, ".png"), f"{label}: LR finder")
    _write_tensorboard(out / TENSORBOARD_DIR, history, lr_curves)
    files.write_json_atomic(out / FOLD_RECORD, result)


def write_summary(train_dir: Path, summary: Mapping[str, Any]) -> None:
    files.write_json_atomic(Path(train_dir) / SUMMARY, summary)


# ---------------------------------------------------------------- readers
def read_summary(train_dir: Path) -> dict[str, Any]:
    return json.loads((Path(train_dir) / SUMMARY).read_text())


def read_params(train_dir: Path) -> TrainParams:
    """The parameters a run trained with, from its summary."""
    return TrainParams(**read_summary(train_dir)["params"])


def read_fold_predictions(folder: Path) -> dict[str, list]:
    """One fold folder's predictions as columns (label int, probability float, the rest str)."""
    columns: dict[str, list] = {name: [] for name in PREDICTION_COLUMNS}
    with open(Path(folder) / PREDICTIONS_CSV, newline="") as handle:
        for row in csv.DictReader(handle):
            for name in ("source_id", "patient", "label_source"):
                columns[name].append(row[name])
            columns["label"].append(int(row["label"]))
            columns["probability"].append(float(row["probability"]))
    return columns


def read_predictions(train_dir: Path) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of every fold as columns, with the fold index added."""
    columns: dict[str, list] = {"fold": [], **{name: [] for name in PREDICTION_COLUMNS}}
    for fold, folder in fold_dirs(train_dir):
        rows = read_fold_predictions(folder)
        columns["fold"].extend([fold] * len(rows["source_id"]))
        for name in PREDICTION_COLUMNS:
            columns[name].extend(rows[name])
    return {name: np.asarray(values) for name, values in columns.items()}


def read_histories(train_dir: Path) -> dict[int, list[dict[str, Any]]]:
    return {fold: json.loads((folder / HISTORY_JSON).read_text()) for fold, folder in fold_dirs(train_dir)}


def read_lr_curves(train_dir: Path) -> dict[str, dict[str, Any]]:
    """{'fold <k>, body <phase>': curve} of every LR-finder sweep, in fold then phase-name order."""
    curves = {}
    for fold, folder in fold_dirs(train_dir):
        for path in sorted(folder.glob(lr_curve_name("*", ".json"))):
            curves[f"fold {fold}, body {path.stem.removeprefix(LR_FIND_PREFIX)}"] = json.loads(path.read_text())
    return curves


def plot_lr_curves(curves: Mapping[str, Mapping], path: Path, title: str) -> Path:
    """The one LR-finder figure: smoothed loss against learning rate for each curve ({label: curve as
    `lr_finder.sweep` returns it, with `lr_finder.suggest`'s suggestion}), each suggestion dotted in its
    curve's colour. A single curve (one fold's phase) also shows its raw batch losses; several (every fold
    of a run) are told apart by their labels. The loss axis stops at 4x the lowest smoothed loss, where a
    sweep stops."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    single = len(curves) == 1
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, curve in curves.items():
        if single and "raw_losses" in curve:
            ax.plot(curve["lrs"], curve["raw_losses"], color="0.75", lw=1, label="batch loss")
        line, = ax.plot(curve["lrs"], curve["losses"], lw=2 if single else 1, alpha=1 if single else 0.8,
                        label="smoothed (beta 0.98)" if single else label)
        if curve.get("suggestion"):
            ax.axvline(curve["suggestion"], color=line.get_color(), ls=":", lw=1.5 if single else 1,
                       label=f"valley {curve['suggestion']:.2e}" if single else None)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    finite = [x for curve in curves.values() for x in curve["losses"] if math.isfinite(x)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1 + 1e-9)
    ax.set_title(title, fontsize=9)
    if len(curves) <= 10:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
