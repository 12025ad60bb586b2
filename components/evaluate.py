"""Evaluate: the study's metrics on the out-of-fold predictions, with CIs, tables and figures.

Metrics on observed labels are always computed. For imputed variants split by
image, the study's own way (imputed labels counted in validation) is computed
too, under its own name, so the two can never be confused. Bootstrap CIs
resample patients when the split kept patients apart, images otherwise.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf

import models  # noqa: F401  (registers the custom layers for load_model)
from components import base, evaluate_metrics, evaluate_plots, gradcam
from components.train import component as train_component
from tfrecords import preprocessing, schema, writer

EVALUATION_NAME = "evaluation.json"
PER_FOLD_NAME = "metrics_per_fold.csv"
SUMMARY_NAME = "metrics_summary.csv"
FOLD_PREFIX = "fold_"
OBSERVED = "observed_labels"
STUDY_WAY = "study_way_imputed_labels_in_validation"


def _fold_dirs(train_dir: Path) -> list[tuple[int, Path]]:
    folds = [(int(p.name[len(FOLD_PREFIX):]), p) for p in train_dir.glob(f"{FOLD_PREFIX}*") if p.is_dir()]
    return sorted(folds)


def read_train_summary(train_dir: Path) -> dict[str, Any]:
    return json.loads((train_dir / train_component.SUMMARY).read_text())


def read_predictions(train_dir: Path) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of every fold as columns, with the fold index added."""
    columns: dict[str, list] = {"fold": [], "source_id": [], "patient": [], "label": [], "label_source": [],
                                "probability": []}
    for fold, folder in _fold_dirs(train_dir):
        with open(folder / "predictions.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                columns["fold"].append(fold)
                for name in ("source_id", "patient", "label_source"):
                    columns[name].append(row[name])
                columns["label"].append(int(row["label"]))
                columns["probability"].append(float(row["probability"]))
    return {name: np.asarray(values) for name, values in columns.items()}


def read_histories(train_dir: Path) -> dict[int, list[dict[str, Any]]]:
    return {fold: json.loads((folder / "history.json").read_text()) for fold, folder in _fold_dirs(train_dir)}


def read_lr_sweeps(train_dir: Path) -> list[dict[str, Any]]:
    sweeps = []
    for fold, folder in _fold_dirs(train_dir):
        for path in sorted(folder.glob("lr_find_*.json")):
            curve = json.loads(path.read_text())
            sweeps.append({"label": f"fold {fold}, body {path.stem.removeprefix('lr_find_')}",
                           "learning_rates": curve["lrs"], "losses": curve["losses"],
                           "suggestion": curve.get("suggestion")})
    return sweeps


def model_path(train_dir: Path, fold: int) -> Path:
    return train_dir / f"{FOLD_PREFIX}{fold}" / "model.keras"


def evaluation_sets(predictions: Mapping[str, np.ndarray], split: str) -> dict[str, dict[str, np.ndarray]]:
    """The rows and labels each named metric set is computed on."""
    observed = predictions["label_source"] == "observed"
    sets = {OBSERVED: {k: v[observed] for k, v in predictions.items()}}
    if split == "image" and not observed.all():
        sets[STUDY_WAY] = dict(predictions)
    return sets


def evaluate(predictions: Mapping[str, np.ndarray], split: str, threshold: float, resamples: int,
             seed: int) -> dict[str, Any]:
    results = {}
    for name, rows in evaluation_sets(predictions, split).items():
        summary = evaluate_metrics.summarize(rows["fold"], rows["label"], rows["probability"], threshold)
        groups = rows["patient"] if split == "patient" else rows["source_id"]
        summary["bootstrap"] = evaluate_metrics.bootstrap(
            rows["label"], rows["probability"], groups, resamples, seed, threshold)
        summary["bootstrap"]["unit"] = "patient" if split == "patient" else "image"
        results[name] = summary
    return results


def headline(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Fold means with the bootstrap interval, on observed labels: what reports and blessing read."""
    observed = results[OBSERVED]
    intervals = observed["bootstrap"]["intervals"]
    table = {name: {**observed["fold_mean"][name], "ci_low": intervals[name]["low"], "ci_high": intervals[name]["high"]}
             for name in evaluate_metrics.FOLD_METRICS}
    table.update({name: {"mean": observed["rates_summed"][name], "ci_low": intervals[name]["low"],
                         "ci_high": intervals[name]["high"]} for name in evaluate_metrics.RATES})
    return table


def _write_tables(out_dir: Path, results: Mapping[str, Any]) -> None:
    with open(out_dir / PER_FOLD_NAME, "w", newline="") as handle:
        fields = ["set", "fold", *evaluate_metrics.FOLD_METRICS, "tp", "fn", "tn", "fp"]
        table = csv.DictWriter(handle, fieldnames=fields)
        table.writeheader()
        for name, summary in results.items():
            for fold, values in summary["per_fold"].items():
                table.writerow({"set": name, "fold": fold, **values})
    with open(out_dir / SUMMARY_NAME, "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["set", "metric", "value", "fold_std", "ci_low", "ci_high", "how"])
        for name, summary in results.items():
            intervals = summary["bootstrap"]["intervals"]
            for metric in evaluate_metrics.FOLD_METRICS:
                value = summary["fold_mean"][metric]
                table.writerow([name, metric, value["mean"], value["std"], intervals[metric]["low"],
                                intervals[metric]["high"], "mean over folds"])
            for metric in evaluate_metrics.RATES:
                table.writerow([name, metric, summary["rates_summed"][metric], "", intervals[metric]["low"],
                                intervals[metric]["high"], "summed confusion matrix"])


def _gradcam_examples(train: base.Artifact, tfrecords_dir: Path, predictions, count: int, image_size: int):
    """A few validation images of each class from the first fold, with their heat maps."""
    fold = int(np.min(predictions["fold"]))
    in_fold = predictions["fold"] == fold
    wanted = {}
    for label in (1, 0):
        ids = predictions["source_id"][in_fold & (predictions["label"] == label)]
        wanted.update({sid: label for sid in sorted(ids)[:count]})
    images, titles = [], []
    for serialized in tf.data.TFRecordDataset(writer.shard_paths(tfrecords_dir)):
        parsed = schema.parse_example(serialized)
        source_id = parsed["image/source_id"].numpy().decode()
        if source_id in wanted:
            images.append(preprocessing.preprocess(parsed["image/encoded"], image_size).numpy())
            probability = float(predictions["probability"][predictions["source_id"] == source_id][0])
            titles.append(f"{'died' if wanted[source_id] else 'survived'}, p={probability:.2f}\n{source_id[:28]}")
    if not images:
        return None
    model = keras.models.load_model(model_path(train.path, fold), compile=False)
    return np.stack(images), gradcam.gradcam(model, np.stack(images)), titles


def evaluation_record(predictions: Mapping[str, np.ndarray], variant: str, split: str, weights: str | None,
                      params: Mapping[str, Any]) -> dict[str, Any]:
    results = evaluate(predictions, split, params["threshold"], params["bootstrap_resamples"], params["seed"])
    return {"variant": variant, "split": split, "threshold": params["threshold"], "positive_class": "died",
            "weights": weights, "metrics": headline(results), "sets": results}


def write_figures(out_dir: Path, record: Mapping[str, Any], predictions, histories, sweeps) -> None:
    observed = evaluation_sets(predictions, record["split"])[OBSERVED]
    evaluate_plots.roc_curves(observed["fold"], observed["label"], observed["probability"], out_dir / "roc.png")
    evaluate_plots.pr_curves(observed["fold"], observed["label"], observed["probability"], out_dir / "pr.png")
    evaluate_plots.confusion_matrix(record["sets"][OBSERVED]["confusion_summed"], out_dir / "confusion.png")
    evaluate_plots.loss_curves(histories, out_dir / "loss.png")
    if sweeps:
        evaluate_plots.lr_sweeps(sweeps, out_dir / "lr_finder.png")


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path) -> Mapping[str, Any]:
    train = inputs["train"]
    summary = read_train_summary(train.path)
    predictions = read_predictions(train.path)
    record = evaluation_record(predictions, summary["variant"], summary["split"], summary["weights"], params)
    base.write_json_atomic(out_dir / EVALUATION_NAME, record)
    _write_tables(out_dir, record["sets"])
    write_figures(out_dir, record, predictions, read_histories(train.path),
                  read_lr_sweeps(train.path))
    if params["gradcam_images"]:
        observed = evaluation_sets(predictions, summary["split"])[OBSERVED]
        examples = _gradcam_examples(train, inputs["tfrecords"].path, observed, params["gradcam_images"],
                                     summary["params"]["image_size"])
        if examples:
            evaluate_plots.gradcam_grid(*examples, out_dir / "gradcam.png")
    return {name: round(value["mean"], 4) for name, value in record["metrics"].items()}


def _summary(artifact: base.Artifact) -> str:
    record = json.loads((artifact.path / EVALUATION_NAME).read_text())
    metrics = record["metrics"]

    def show(name):
        m = metrics[name]
        return f"{name} {m['mean']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"

    return (f"observed labels, {record['split']} split: " + ", ".join(
        show(n) for n in ("balanced_accuracy", "roc_auc", "precision", "recall", "f1")) + " (fold mean [95% CI])")


SPEC = base.ComponentSpec(
    name="evaluate", run=run, summary=_summary,
    code=(sys.modules[__name__], evaluate_metrics, evaluate_plots, gradcam),
)
