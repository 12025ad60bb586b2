"""Evaluate: the study's metrics on the out-of-fold predictions, with CIs, tables and figures.

Each metric's estimate is the pooled out-of-fold value, its 95% interval the bootstrap of that same
pooled statistic, and the fold mean +- sd stands beside them as the spread between folds
(`evaluate_metrics`). Metrics on observed labels are always computed. For imputed variants split by
image, the study's own way (imputed labels counted in validation) is computed
too, under its own name, so the two can never be confused. Bootstrap CIs
resample patients when the split kept patients apart, images otherwise.
Under `--split=site` each fold is a held-out site (`site_of_fold`), and the
record adds one row per site whose validation rows hold both outcomes (`per_site`).

Beyond the study, on observed labels only, each set named apart from the
headline (`observed_labels`, which blessing and the study tables read):
patients ranked by the mean of their images' probabilities (patient split
only), the calibration of the image-level probabilities, the images taken
in the first week (`EARLY_OFFSET_DAYS`, fixed before any result was seen:
is risk readable from the X-ray a triage decision would use?), with
`tta_views`, test-time augmentation with the training augmentation, the
calibration slope and intercept and decision curves (`evaluate_decision`), the
recalibration export serves, estimated by cross-fitting (fitted on the other
folds' out-of-fold predictions, applied to each fold: `validation.cross_fitted`),
and what is known at admission: age and sex alone, and the image model's log-odds
with age and sex, on the same folds (`clinical_baseline`), which answers
"does the X-ray add anything over age?".

With repeated cross-validation every set above is repeat 0's (the single
split); `evaluate_repeats` adds the mean over repeats under `repeated_cv`,
the admission baselines refitted on each repeat's folds under its `baselines`.
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import special

import models  # noqa: F401  (registers the custom layers for load_model)
from common import files
from common.seeds import epoch_seed
from common.errors import PipelineError
from components import base, ingest
from components.evaluate import clinical_baseline, gradcam
from components.evaluate import decision as evaluate_decision
from components.evaluate import metrics as evaluate_metrics
from components.evaluate import plots as evaluate_plots
from components.evaluate import repeats as evaluate_repeats
from components.evaluate import validation
from components.evaluate.outputs import (EVALUATION_NAME, PER_FOLD_NAME, SUMMARY_NAME, TTA_PREDICTIONS_NAME,
                                         DECISION_CURVE_NAME, CALIBRATION_FIGURE, DECISION_CURVE_FIGURE, OBSERVED,
                                         STUDY_WAY, PATIENT_LEVEL, OBSERVED_TTA, EARLY_IMAGES, AGE_SEX, IMAGE_AGE_SEX,
                                         MODEL_NAMES, EARLY_OFFSET_DAYS, RECALIBRATED)
from components.train import outputs as train_outputs
from components.train.params import TrainParams
from images import augment, preprocessing
from models.precision import as_float32
from models.predict import make_predict
from tfrecords import schema, writer

ESTIMATE = ("pooled out-of-fold predictions; 95% interval: percentile bootstrap of the same pooled statistic; "
            "fold_mean +- fold_std: the spread over the validation folds")


def with_row_facts(predictions: Mapping[str, np.ndarray],
                   examples: Mapping[str, Mapping[str, str]]) -> dict[str, np.ndarray]:
    """Predictions with each image's offset in days and its patient's age and sex (NaN where unknown), from
    ingest's table (`examples`: source_id -> row); an image ingest does not list is a named error."""
    missing = [str(sid) for sid in predictions["source_id"] if sid not in examples]
    if missing:
        raise PipelineError(f"evaluate: {len(missing)} predicted image(s) not in ingest's table, e.g. {missing[0]!r}")
    rows = [examples[sid] for sid in predictions["source_id"]]
    age, sex = clinical_baseline.admission_features(rows).T
    return {**predictions, "offset_days": np.array([schema.number_or_nan(row["offset"]) for row in rows]),
            "age": age, "sex": sex}


def _observed(predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    observed = predictions["label_source"] == "observed"
    return {k: v[observed] for k, v in predictions.items()}


def patient_level(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per (fold, patient): the mean of the patient's image probabilities and the patient's label.

    A patient has one outcome, so images of one patient that disagree are a data error, not noise."""
    frame = pd.DataFrame({k: rows[k] for k in ("fold", "patient", "label", "probability")})
    grouped = frame.groupby(["fold", "patient"], sort=True)
    labels = grouped["label"].agg(["min", "max"])
    disagreeing = labels[labels["min"] != labels["max"]]
    if len(disagreeing):
        (fold, patient), row = next(disagreeing.iterrows())
        raise ValueError(f"patient {patient!r} (fold {fold}) has disagreeing observed labels "
                         f"[{row['min']}, {row['max']}]: a patient has one outcome")
    means = grouped.agg(label=("label", "first"), probability=("probability", "mean"),
                        images=("label", "size")).reset_index()
    return {name: means[name].to_numpy() for name in ("fold", "patient", "label", "probability", "images")}


def early_images(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows whose image was taken at most `EARLY_OFFSET_DAYS` days in; an image without an offset is left out."""
    early = rows["offset_days"] <= EARLY_OFFSET_DAYS  # NaN compares False
    return {k: v[early] for k, v in rows.items()}


def evaluation_sets(predictions: Mapping[str, np.ndarray], split: str,
                    tta: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The rows and labels each named metric set is computed on."""
    observed = _observed(predictions)
    sets = {OBSERVED: observed}
    if split == "image" and len(observed["label"]) < len(predictions["label"]):
        sets[STUDY_WAY] = dict(predictions)
    if split in evaluate_metrics.PATIENT_GROUPED_SPLITS:  # a patient's images sit in one fold: ranked once
        sets[PATIENT_LEVEL] = patient_level(observed)
    if "offset_days" in observed:
        sets[EARLY_IMAGES] = early_images(observed)
    sets[RECALIBRATED] = {**observed, "probability": validation.cross_fitted(
        observed["label"], observed["probability"], observed["fold"])}
    if tta is not None:
        sets[OBSERVED_TTA] = _observed(tta)
    if "age" in observed:  # fitted fold by fold on the observed rows of the other folds, as the image model's rows
        admission = np.column_stack([observed["age"], observed["sex"]])
        sets[AGE_SEX] = {**observed, "probability": clinical_baseline.out_of_fold(
            admission, observed["label"], observed["fold"])}
        sets[IMAGE_AGE_SEX] = {**observed, "probability": clinical_baseline.combined(
            observed["probability"], admission, observed["label"], observed["fold"])}
    return sets


def set_metrics(rows: Mapping[str, np.ndarray], split: str, threshold: float, resamples: int,
                seed: int) -> dict[str, Any]:
    """Pooled and per-fold metrics and bootstrap CIs of one set (patients resampled under a patient split)."""
    summary = evaluate_metrics.summarize(rows["fold"], rows["label"], rows["probability"], threshold)
    summary["bootstrap"] = evaluate_metrics.bootstrap(
        rows["label"], rows["probability"], evaluate_metrics.resample_units(rows, split), resamples, seed,
        functools.partial(evaluate_metrics.metric_values, threshold=threshold))
    summary["bootstrap"]["unit"] = evaluate_metrics.resample_unit(split)
    return summary


def calibration_statistics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """ECE and the logistic recalibration's slope and intercept: what the calibration entry bootstraps."""
    return {"ece": evaluate_metrics.calibration(labels, probabilities)["ece"],
            **evaluate_decision.calibration_slope_intercept(labels, probabilities)}


def calibration_entry(rows: Mapping[str, np.ndarray], pooled_brier: float, split: str, resamples: int,
                      seed: int) -> dict[str, Any]:
    """Reliability bins, ECE, Brier, calibration slope and intercept of the pooled probabilities, with the
    bootstrap intervals of ECE, slope and intercept (the same resamples as the set's metrics)."""
    labels, probabilities = rows["label"], rows["probability"]
    units = evaluate_metrics.resample_units(rows, split)
    intervals = evaluate_metrics.bootstrap(labels, probabilities, units, resamples, seed,
                                           calibration_statistics)["intervals"]
    return {**evaluate_metrics.calibration(labels, probabilities), "brier": pooled_brier,
            **evaluate_decision.calibration_slope_intercept(labels, probabilities), "intervals": intervals}


def admission_comparison(sets: Mapping[str, Mapping[str, np.ndarray]], split: str, resamples: int,
                         seed: int) -> dict[str, Any]:
    """Pooled ROC AUC of the image model and of image + age/sex, each minus that of age/sex alone, with
    paired bootstrap intervals: does the X-ray add anything over what is known at admission?"""
    rows = sets[OBSERVED]
    baseline, groups = sets[AGE_SEX]["probability"], evaluate_metrics.resample_units(rows, split)
    return {"rows": int(len(rows["label"])), "rows_with_age": int(np.isfinite(rows["age"]).sum()),
            "rows_with_sex": int(np.isfinite(rows["sex"]).sum()), "columns": list(clinical_baseline.ADMISSION_COLUMNS),
            "image_minus_age_sex": evaluate_metrics.paired_auc_difference(
                rows["label"], baseline, rows["probability"], groups, resamples, seed),
            "image_plus_age_sex_minus_age_sex": evaluate_metrics.paired_auc_difference(
                rows["label"], baseline, sets[IMAGE_AGE_SEX]["probability"], groups, resamples, seed)}


def evaluate(predictions: Mapping[str, np.ndarray], split: str, threshold: float, resamples: int,
             seed: int, tta: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Every set's metrics, the calibration of the observed set, the decision curves and, when age and sex are
    known, the admission comparison; one seed for all, so everything is compared on the same resamples."""
    sets = evaluation_sets(predictions, split, tta)
    results = {name: set_metrics(rows, split, threshold, resamples, seed) for name, rows in sets.items()}
    for name in (OBSERVED, RECALIBRATED):
        results[name]["calibration"] = calibration_entry(sets[name], results[name]["pooled"]["brier"], split,
                                                         resamples, seed)
    curves = {name: evaluate_decision.decision_curve(sets[name]["label"], sets[name]["probability"])
              for name in (OBSERVED, AGE_SEX, IMAGE_AGE_SEX) if name in sets}
    comparison = admission_comparison(sets, split, resamples, seed) if AGE_SEX in sets else None
    return {"sets": results, "decision_curves": curves, "admission_comparison": comparison}


def headline(sets: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """On observed labels, each metric's pooled estimate and its interval, the fold mean and sd beside them:
    what reports, the study tables and blessing read."""
    observed = sets[OBSERVED]
    intervals = observed["bootstrap"]["intervals"]
    return {name: {"estimate": observed["pooled"][name], "ci_low": intervals[name]["low"],
                   "ci_high": intervals[name]["high"], "fold_mean": observed["fold_mean"][name]["mean"],
                   "fold_std": observed["fold_mean"][name]["std"], "folds": observed["fold_mean"][name]["folds"]}
            for name in evaluate_metrics.METRICS}


def per_site(observed: Mapping[str, Any], site_of_fold: list[str]) -> list[dict[str, Any]]:
    """The observed set's per-fold metrics named by the site each fold held out, for the sites whose
    validation rows hold both outcomes (one outcome leaves ROC AUC and balanced accuracy undefined)."""
    rows = []
    for fold, values in observed["per_fold"].items():
        deaths = values["tp"] + values["fn"]
        images = deaths + values["tn"] + values["fp"]
        if 0 < deaths < images:
            rows.append({"site": site_of_fold[int(fold)], "fold": int(fold), "images": images, "deaths": deaths,
                         **{name: values[name] for name in evaluate_metrics.METRICS}})
    return rows


def _write_tables(out_dir: Path, record: Mapping[str, Any]) -> None:
    results, site_of_fold = record["sets"], record.get("site_of_fold")
    with files.atomic_open(out_dir / PER_FOLD_NAME, "w", newline="") as handle:
        fields = ["set", "fold", *(["site"] if site_of_fold else []), *evaluate_metrics.METRICS, "tp", "fn", "tn", "fp"]
        table = csv.DictWriter(handle, fieldnames=fields)
        table.writeheader()
        for name, summary in results.items():
            for fold, values in summary["per_fold"].items():
                site = {"site": site_of_fold[int(fold)]} if site_of_fold else {}
                table.writerow({"set": name, "fold": fold, **site, **values})
    with files.atomic_open(out_dir / SUMMARY_NAME, "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["set", "metric", "estimate", "ci_low", "ci_high", "fold_mean", "fold_std", "folds"])
        for name, summary in results.items():
            intervals = summary["bootstrap"]["intervals"]
            for metric in evaluate_metrics.METRICS:
                spread = summary["fold_mean"][metric]
                table.writerow([name, metric, summary["pooled"][metric], intervals[metric]["low"],
                                intervals[metric]["high"], spread["mean"], spread["std"], spread["folds"]])
            if "calibration" in summary:
                calibration = summary["calibration"]
                for metric in ("ece", "slope", "intercept"):
                    interval = calibration["intervals"][metric]
                    table.writerow([name, f"calibration_{metric}", calibration[metric], interval["low"],
                                    interval["high"], "", "", ""])
    curves = record["decision_curves"]
    with files.atomic_open(out_dir / DECISION_CURVE_NAME, "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["threshold", "treat_all", "treat_none", *(f"net_benefit_{name}" for name in curves)])
        for i, row in enumerate(curves[OBSERVED]["rows"]):
            table.writerow([row["threshold"], row["treat_all"], row["treat_none"],
                            *(curve["rows"][i]["model"] for curve in curves.values())])


def _from_records(tfrecords_dir: Path, source_ids: np.ndarray, extract) -> list:
    """`extract(parsed example)` of each of `source_ids`, in that order; a missing one is a named error."""
    wanted, found = set(source_ids), {}
    for serialized in tf.data.TFRecordDataset(writer.shard_paths(tfrecords_dir)):
        parsed = schema.parse_example(serialized)
        source_id = parsed["image/source_id"].numpy().decode()
        if source_id in wanted:
            found[source_id] = extract(parsed)
    missing = sorted(wanted - found.keys())
    if missing:
        raise ValueError(f"{tfrecords_dir}: no image for {len(missing)} validation row(s), e.g. {missing[0]!r}")
    return [found[source_id] for source_id in source_ids]


def validation_images(tfrecords_dir: Path, source_ids: np.ndarray, image_size: int) -> np.ndarray:
    """The images of `source_ids`, in that order, through the one preprocessing training used."""
    return np.stack(_from_records(tfrecords_dir, source_ids,
                                  lambda parsed: preprocessing.preprocess(parsed["image/encoded"], image_size).numpy()))


def _gradcam_examples(train: base.Artifact, tfrecords_dir: Path, predictions, count: int, image_size: int):
    """A few validation images of each class from the first fold, with their heat maps."""
    fold = int(np.min(predictions["fold"]))
    in_fold = predictions["fold"] == fold
    wanted = {}
    for label in (1, 0):
        ids = predictions["source_id"][in_fold & (predictions["label"] == label)]
        wanted.update({sid: label for sid in sorted(ids)[:count]})
    if not wanted:
        return None
    source_ids = np.array(list(wanted))
    images = validation_images(tfrecords_dir, source_ids, image_size)
    titles = [f"{'died' if wanted[sid] else 'survived'}, "
              f"p={float(predictions['probability'][predictions['source_id'] == sid][0]):.2f}\n{sid[:28]}"
              for sid in source_ids]
    model = keras.models.load_model(train_outputs.model_path(train.path, fold), compile=False)
    return images, gradcam.gradcam(model, images), titles


def view_probabilities(predict, images: np.ndarray, augment_fn, views: int, seed: int,
                       batch_size: int) -> np.ndarray:
    """(views, N) probabilities: view 0 is the image as validated in training, view v > 0 the training
    augmentation with batch seed (seed, v). One view is held in memory at a time."""
    def view(v):
        return images if v == 0 else augment_fn(tf.constant(images), tf.constant([seed, v], tf.int64)).numpy()

    def probabilities(batch):
        logits = [predict(tf.constant(batch[i:i + batch_size])).numpy() for i in range(0, len(batch), batch_size)]
        return special.expit(np.concatenate(logits).astype(np.float64))
    return np.stack([probabilities(view(v)) for v in range(views)])


def tta_predictions(train_dir: Path, tfrecords_dir: Path, predictions: Mapping[str, np.ndarray],
                    p: TrainParams, views: int, seed: int) -> dict[str, np.ndarray]:
    """Every validation row's probability averaged over `views` views (see `view_probabilities`) by its
    fold's model, in float32 whatever precision it trained in.

    Probabilities are averaged, not logits: the result is the expected probability over the augmentations
    a training image could have had, as the exported ensemble averages its members' probabilities."""
    if views < 1:
        raise ValueError(f"tta_views must be 0 (off) or at least 1, not {views}")
    probabilities = np.zeros(len(predictions["source_id"]))
    for fold in np.unique(predictions["fold"]):
        rows = np.flatnonzero(predictions["fold"] == fold)
        fold_seed = epoch_seed(seed, int(fold), "tta", 0)
        model = as_float32(keras.models.load_model(train_outputs.model_path(train_dir, int(fold)), compile=False))
        images = validation_images(tfrecords_dir, predictions["source_id"][rows], p.image_size)
        augment_fn = augment.make_augment_fn(p.augmentation, fold_seed % 100_000)
        probabilities[rows] = view_probabilities(make_predict(model), images, augment_fn, views, fold_seed,
                                                 p.eval_batch_size).mean(axis=0)
    return {**predictions, "probability": probabilities}


def _write_tta_predictions(path: Path, predictions: Mapping[str, np.ndarray],
                           tta: Mapping[str, np.ndarray]) -> None:
    with open(path, "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["fold", "source_id", "patient", "label", "label_source", "probability_stored",
                        "probability_tta"])
        for i in range(len(predictions["source_id"])):
            table.writerow([*(predictions[k][i] for k in ("fold", "source_id", "patient", "label", "label_source")),
                            predictions["probability"][i], tta["probability"][i]])


def read_tta_predictions(path: Path, predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`predictions` with the test-time-augmented probabilities of a stored `predictions_tta.csv`; its rows
    must be `predictions`' own (same images, same stored probabilities), else a named error."""
    with open(path, newline="") as handle:
        rows = {row["source_id"]: row for row in csv.DictReader(handle)}
    for source_id, probability in zip(predictions["source_id"], predictions["probability"]):
        row = rows.get(source_id)
        if row is None or abs(float(row["probability_stored"]) - probability) > 1e-12:
            raise PipelineError(f"{path}: image {str(source_id)!r} is missing or has another stored probability than "
                                "the fold predictions: not the same run")
    return {**predictions, "probability": np.array([float(rows[sid]["probability_tta"])
                                                    for sid in predictions["source_id"]])}


def evaluation_record(predictions: Mapping[str, np.ndarray], variant: str, split: str, weights: str | None,
                      params: Mapping[str, Any], tta: Mapping[str, np.ndarray] | None = None,
                      site_of_fold: list[str] | None = None) -> dict[str, Any]:
    """`site_of_fold` (the train summary's, under --split=site): the site each fold held out."""
    results = evaluate(predictions, split, params["threshold"], params["bootstrap_resamples"], params["seed"], tta)
    if tta is not None:
        results["sets"][OBSERVED_TTA]["tta_views"] = params["tta_views"]
    record = {"variant": variant, "split": split, "threshold": params["threshold"], "positive_class": "died",
              "weights": weights, "estimate": ESTIMATE, "metrics": headline(results["sets"]), **results}
    if site_of_fold:
        record["site_of_fold"] = list(site_of_fold)
        record["per_site"] = per_site(results["sets"][OBSERVED], site_of_fold)
    return record


def summary_figures(out_dir: Path, record: Mapping[str, Any]) -> None:
    """The figures drawn from the summary alone: confusion matrix, reliability diagram, decision curves."""
    observed = record["sets"][OBSERVED]
    evaluate_plots.confusion_matrix(observed["confusion"], out_dir / "confusion.png")
    evaluate_plots.reliability_diagram(observed["calibration"], out_dir / CALIBRATION_FIGURE)
    evaluate_plots.decision_curves({MODEL_NAMES[name]: curve for name, curve in record["decision_curves"].items()},
                                   out_dir / DECISION_CURVE_FIGURE)


def write_summary(out_dir: Path, record: Mapping[str, Any]) -> None:
    """`evaluation.json`, the metric tables and the summary figures of one evaluation record."""
    files.write_json_atomic(out_dir / EVALUATION_NAME, record)
    _write_tables(out_dir, record)
    summary_figures(out_dir, record)


def write_figures(out_dir: Path, record: Mapping[str, Any], predictions, histories, lr_curves) -> None:
    observed = _observed(predictions)
    evaluate_plots.roc_curves(observed["fold"], observed["label"], observed["probability"], out_dir / "roc.png")
    evaluate_plots.pr_curves(observed["fold"], observed["label"], observed["probability"], out_dir / "pr.png")
    evaluate_plots.loss_curves(histories, out_dir / "loss.png")
    if lr_curves:
        train_outputs.plot_lr_curves(lr_curves, out_dir / "lr_finder.png", "LR finder, every fold (dotted: suggestion)")


def add_repeated_cv(record: dict[str, Any], train_dir: Path, summary: Mapping[str, Any],
                    predictions: Mapping[str, np.ndarray], params: Mapping[str, Any], out_dir: Path) -> None:
    """With `--repeats` > 1, the record's `repeated_cv` (its sets are repeat 0's, the single split), the
    admission baselines taking age and sex from `predictions` (`with_row_facts`)."""
    if summary.get("params", {}).get("repeats", 1) > 1:
        admission = {sid: (age, sex) for sid, age, sex in zip(predictions["source_id"], predictions["age"],
                                                             predictions["sex"])}
        record["repeated_cv"] = evaluate_repeats.run(train_dir, summary, params, out_dir, admission)


def without_burned_in_text(predictions: Mapping[str, np.ndarray],
                           examples: Mapping[str, Mapping[str, str]]) -> dict[str, np.ndarray]:
    """The rows whose DICOM header does not flag burned-in annotation (text that may name the patient):
    their pixels are not cleaned, so they train but are never pictured."""
    keep = np.array([examples.get(sid, {}).get("burned_in_annotation") != "1" for sid in predictions["source_id"]],
                    dtype=bool)
    return {k: v[keep] for k, v in predictions.items()}


def examples_by_source_id(artifact: base.Artifact) -> dict[str, dict[str, str]]:
    return {row["source_id"]: row for row in ingest.read_examples(artifact)}


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path) -> Mapping[str, Any]:
    train = inputs["train"]
    summary, trained_with = train_outputs.read_summary(train.path), train_outputs.read_params(train.path)
    examples = examples_by_source_id(inputs["examples"])
    predictions = with_row_facts(train_outputs.read_predictions(train.path), examples)
    tta = None
    if params["tta_views"]:
        tta = tta_predictions(train.path, inputs["tfrecords"].path, predictions, trained_with,
                              params["tta_views"], params["seed"])
        _write_tta_predictions(out_dir / TTA_PREDICTIONS_NAME, predictions, tta)
    record = evaluation_record(predictions, summary["variant"], summary["split"], summary["weights"], params, tta,
                               summary.get("site_of_fold"))
    add_repeated_cv(record, train.path, summary, predictions, params, out_dir)
    # What export serves and its model card compares a site with: the recalibration fitted on every repeat's
    # out-of-fold predictions, and the case mix of the images they were made on.
    record["development"] = {"recalibration": development_recalibration(train.path),
                             "case_mix": development_case_mix(examples, train.path)}
    write_summary(out_dir, record)
    write_figures(out_dir, record, predictions, train_outputs.read_histories(train.path),
                  train_outputs.read_lr_curves(train.path))
    if params["gradcam_images"]:
        shown = without_burned_in_text(_observed(predictions), examples)
        gradcam_examples = _gradcam_examples(train, inputs["tfrecords"].path, shown, params["gradcam_images"],
                                             trained_with.image_size)
        if gradcam_examples:
            evaluate_plots.gradcam_grid(*gradcam_examples, out_dir / "gradcam.png")
    return {name: round(value["estimate"], 4) for name, value in record["metrics"].items()}


def out_of_fold_observed(train_dir: Path) -> dict[str, np.ndarray]:
    """Every repeat's out-of-fold predictions on observed labels, pooled (one row per image and repeat)."""
    repeats = train_outputs.read_summary(train_dir).get("params", {}).get("repeats", 1)
    pooled: dict[str, list] = {}
    for repeat in range(repeats):
        rows = train_outputs.read_predictions(train_outputs.repeat_dir(train_dir, repeat))
        observed = rows["label_source"] == "observed"
        for name, values in rows.items():
            pooled.setdefault(name, []).extend(values[observed])
    return {name: np.asarray(values) for name, values in pooled.items()}


def development_recalibration(train_dir: Path) -> dict[str, Any]:
    """`validation.development_recalibration` of the pooled out-of-fold predictions: what export builds into the
    served graph (with `--recalibrate`), fitted here so that export reads it with the other evaluation results."""
    rows = out_of_fold_observed(train_dir)
    return {**validation.development_recalibration(rows["label"], rows["probability"]),
            "fitted_on": "logit of the out-of-fold probabilities on observed labels (each image scored by the fold "
                         "model that did not train on it), every repeat pooled",
            "formula": "served probability = sigmoid(intercept + slope * logit(mean of the fold models' "
                       "probabilities))"}


def development_case_mix(examples: Mapping[str, Mapping[str, str]], train_dir: Path) -> dict[str, Any]:
    """The case mix of the images the model was cross-validated on with observed labels (ingest's rows)."""
    rows = out_of_fold_observed(train_dir)
    label_of = dict(zip(rows["source_id"], rows["label"]))  # repeats validate the same images again
    by_id = examples
    ids, labels = list(label_of), list(label_of.values())
    missing = [sid for sid in ids if sid not in by_id]
    if missing:
        raise PipelineError(f"evaluate: {len(missing)} predicted image(s) not in ingest's table, e.g. {missing[0]!r}")
    chosen = [by_id[sid] for sid in ids]
    age, sex = clinical_baseline.admission_features(chosen).T
    return {**validation.case_mix(chosen, labels, age, sex), "rows": "images with observed labels"}


def _summary(artifact: base.Artifact) -> str:
    record = json.loads((artifact.path / EVALUATION_NAME).read_text())
    metrics = record["metrics"]

    def show(name):
        m = metrics[name]
        return f"{name} {m['estimate']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"

    return (f"observed labels, {record['split']} split: " + ", ".join(
        show(n) for n in ("balanced_accuracy", "roc_auc", "precision", "recall", "f1"))
        + " (pooled out-of-fold [95% CI])")


SPEC = base.ComponentSpec(
    name="evaluate", run=run, summary=_summary,
)
