"""The shortcut audit (issue #34): does the X-ray model rank deaths by the lungs or by where the X-ray came from?

Run by `python -m pipeline.study --audit=<results folders>`; the rules are results/README.md's "Rules for the
shortcut audit", the measures `shortcuts`' functions. What this module adds is the joining, and the checks that
make the joined arrays those of the comparison table:

- the population is the observed-label images of the pipeline's TFRecords, in source_id order; the folds are
  drawn again by the training stage's own function with the committed runs' parameters, and must equal every
  committed run's stored folds (repeat by repeat, image by image), else it stops;
- each patient's source type and site come from `origins` (metadata.csv by the rules), each image's view
  from ingest's table; the patients' sites must be those the TFRecords carry;
- age + sex refitted here must give the committed runs' own age + sex ROC AUC, repeat by repeat;
- the frozen features are the linear probe's (`linear_probe.feature_model` on the shared weights); the
  mortality probe refitted on them is compared with the committed probe's predictions and the largest
  difference recorded (a check of the features, not a result).

A `--split=site` study (leave one site out) is read when given: each model's pooled ROC AUC over the held-out
sites and within each held-out site, beside age + sex on the same folds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import models
from common.errors import PipelineError
from components.evaluate import clinical_baseline, origins as origins_lib, repeats, shortcuts
from components.evaluate import metrics as evaluate_metrics
from components.evaluate.outputs import REPEATED_AGE_SEX
from components.train import fold as fold_lib, in_fold_imputation, input_pipeline, linear_probe
from components.train import outputs as train_outputs
from sources import origin

AGE_SEX = "age + sex"
SOURCE_TYPE, SITE, VIEW = "source type", "site", "view"
AP, PA = "AP", "PA"
UNKNOWN_VIEW = "unknown"  # a blank view: its own stratum, never counted as PA
ALL_IMAGES = "all"
FOLD_PARAMS = ("split", "folds", "seed", "repeats", "labels", "variant", "rebalance", "min_site_patients")


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """One committed run the audit reads: its name (the comparison table's), folder and what made it."""

    name: str
    run_dir: Path
    evaluation: Mapping[str, Any]


def fold_params(runs: Sequence[ModelRun]) -> dict[str, Any]:
    """The parameters that drew the committed runs' folds, which must be one set for all of them."""
    found = {}
    for run in runs:
        params = train_outputs.read_summary(run.run_dir)["params"]
        found[run.name] = {name: params.get(name, origin.MIN_SITE_PATIENTS if name == "min_site_patients" else None)
                          for name in FOLD_PARAMS}  # runs before --split=site kept no min_site_patients
    distinct = {tuple(sorted(p.items())) for p in found.values()}
    if len(distinct) != 1:
        raise PipelineError(f"--audit: the runs were cross-validated differently: {found}")
    params = next(iter(found.values()))
    if params["split"] != "patient" or params["repeats"] < 2 or params["labels"] != "observed":
        raise PipelineError(f"--audit: the rules need --split=patient --repeats > 1 on observed labels; the runs "
                            f"have {params}")
    return params


def population(examples: input_pipeline.Examples, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The observed-label rows in source_id order, with each repeat's fold as the training stage draws it."""
    repeated = in_fold_imputation.make_repeated_folds(examples, params["split"], params["folds"], params["seed"],
                                                      params["repeats"], params["min_site_patients"])
    folds = np.full((len(repeated), len(examples)), -1)
    for r, per_fold in enumerate(repeated):
        for k, (_, validation) in enumerate(per_fold):
            folds[r, validation] = k
    order = np.argsort(examples.source_ids, kind="stable")
    return {"order": order, "source_id": examples.source_ids[order], "patient": examples.patients[order],
            "label": examples.labels[order], "site_in_tfrecords": examples.sites[order], "fold": folds[:, order]}


def model_predictions(run: ModelRun, rows: Mapping[str, np.ndarray]) -> np.ndarray:
    """The run's (repeats, N) out-of-fold probabilities, after checking its rows, labels and folds are `rows`'."""
    stored = repeats.aligned_repeats(run.run_dir, rows["fold"].shape[0])
    for name in ("source_id", "label"):
        if not np.array_equal(stored[name].astype(str), rows[name].astype(str)):
            raise PipelineError(f"--audit: {run.run_dir} validated other images or labels than the TFRecords hold")
    if not np.array_equal(stored["fold"], rows["fold"]):
        differing = np.argwhere(stored["fold"] != rows["fold"])[0]
        raise PipelineError(f"--audit: {run.run_dir}'s folds are not the ones drawn again here (repeat "
                            f"{differing[0]}, image {rows['source_id'][differing[1]]}): not the comparison's folds")
    return stored["probability"]


def view_stratum(view: str) -> str:
    """AP for any AP view, `UNKNOWN_VIEW` for a blank one, PA for the rest (the frontal selection keeps PA and the AP
    views alone). The upstream collection's selection keeps no blank view, so the audit's strata are AP and PA; the
    view probe and the AP column tell AP from everything else, a blank view included."""
    view = view.strip().upper()
    return UNKNOWN_VIEW if not view else AP if view.startswith(AP) else PA


def row_facts(rows: Mapping[str, np.ndarray], found: origins_lib.Origins,
              ingest_rows: Mapping[str, Mapping[str, str]]) -> dict[str, np.ndarray]:
    """Each row's source type, pooled site and view (`view_stratum`), and age and sex (NaN where unknown)."""
    patients = [str(p) for p in rows["patient"]]
    missing = sorted(set(patients) - set(found.source))
    if missing:
        raise PipelineError(f"--audit: patients {missing[:3]} are not among metadata.csv's selected rows")
    sites = np.array([found.site[p] for p in patients])
    carried = np.array([s or origin.UNKNOWN_SITE for s in rows["site_in_tfrecords"].astype(str)])
    if not np.array_equal(sites, carried):
        raise PipelineError("--audit: the patients' sites by the rules differ from those the TFRecords carry")
    facts = [ingest_rows[str(sid)] for sid in rows["source_id"]]
    views = np.array([view_stratum(row["view"]) for row in facts])
    return {SOURCE_TYPE: np.array([found.source_type[p] for p in patients]),
            SITE: np.array([found.pooled_site[p] for p in patients]), VIEW: views,
            "admission": clinical_baseline.admission_features(facts)}


def frozen_features(examples: input_pipeline.Examples, weights: str, weights_mode: str, image_size: int,
                    batch_size: int) -> tuple[np.ndarray, str]:
    """The linear probe's features of every row (TFRecord order) and the description of the weights."""
    classifier, report = models.build_classifier("resnet18", image_size, weights=weights, weights_mode=weights_mode)
    features = linear_probe.features(linear_probe.feature_model(classifier), examples.images, batch_size)
    return features, fold_lib.weights_description(report)


def provenance_probes(features: np.ndarray, rows: Mapping[str, np.ndarray], facts: Mapping[str, np.ndarray],
                      rebalance: str, seed: int, resamples: int, eval_seed: int) -> list[dict[str, Any]]:
    """Can the frozen features tell the source type, the pooled site (one-vs-rest, macro) and AP from PA?"""
    def scores_of(target):
        per_repeat = [shortcuts.probe_out_of_fold(features, target, rows["patient"], folds, rebalance, seed)
                      for folds in rows["fold"]]
        return np.stack([s for s, _ in per_repeat]), [c for _, cs in per_repeat for c in cs]

    out = []
    for kind, positive in ((SOURCE_TYPE, origin.CASE_REPORT), (VIEW, AP)):
        target = (facts[kind] == positive).astype(int)
        scores, chosen = scores_of(target)
        out.append({"target": f"{kind}: {positive} against the rest", "classes": _class_counts(facts[kind], rows),
                    "c_chosen": chosen, **shortcuts.bootstrap(shortcuts.mean_auc(target, scores), rows["patient"],
                                                                resamples, eval_seed)})
    site_scores, site_cs = {}, []
    for site in sorted(set(facts[SITE].tolist())):
        site_scores[site], chosen = scores_of((facts[SITE] == site).astype(int))
        site_cs += chosen
        out.append({"target": f"site: {site} against the rest",
                    "classes": _class_counts(np.where(facts[SITE] == site, site, "the rest"), rows),
                    "c_chosen": chosen, **shortcuts.bootstrap(
                        shortcuts.mean_auc((facts[SITE] == site).astype(int), site_scores[site]), rows["patient"],
                        resamples, eval_seed)})
    out.append({"target": "site: macro one-vs-rest", "classes": _class_counts(facts[SITE], rows),
                "c_chosen": site_cs, **shortcuts.bootstrap(shortcuts.macro_auc(facts[SITE], site_scores),
                                                           rows["patient"], resamples, eval_seed)})
    return out


def _class_counts(values: np.ndarray, rows: Mapping[str, np.ndarray]) -> dict[str, dict[str, int]]:
    return {name: {"images": int(np.sum(values == name)),
                   "patients": int(len(np.unique(rows["patient"][values == name])))}
            for name in sorted(set(values.tolist()))}


def no_pixel_baselines(rows: Mapping[str, np.ndarray], facts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every no-pixel baseline's (repeats, N) out-of-fold probabilities: each provenance alone and beside age +
    sex, and age + sex alone; all fitted on the training folds only."""
    admission = facts["admission"]
    is_case_report = (facts[SOURCE_TYPE] == origin.CASE_REPORT).astype(float)[:, None]
    is_ap = (facts[VIEW] == AP).astype(float)[:, None]

    def site_rate(training):
        return shortcuts.site_death_rate(facts[SITE], rows["patient"], rows["label"], training)[:, None]

    alone = {"source type (case report)": lambda training: is_case_report, "view (AP)": lambda training: is_ap,
             "site's death rate": site_rate}
    specs = {**alone, **{f"{name} + {AGE_SEX}": (lambda training, f=f: np.hstack([f(training), admission]))
                         for name, f in alone.items()}, AGE_SEX: lambda training: admission}
    return {name: np.stack([shortcuts.baseline_out_of_fold(features, rows["label"], folds) for folds in rows["fold"]])
            for name, features in specs.items()}


def check_age_sex(age_sex: np.ndarray, rows: Mapping[str, np.ndarray], runs: Sequence[ModelRun]) -> None:
    """Age + sex refitted here must rank as in every committed run's own repeated-CV baseline."""
    here = [evaluate_metrics.roc_auc(rows["label"], repeat) for repeat in age_sex]
    for run in runs:
        stored = [r["roc_auc"] for r in run.evaluation["repeated_cv"]["baselines"][REPEATED_AGE_SEX]["per_repeat"]]
        if not np.allclose(here, stored, atol=1e-9):
            raise PipelineError(f"--audit: age + sex gives ROC AUC {here} here and {stored} in {run.run_dir}: "
                                f"not the same rows, facts or folds")


def probe_check(features: np.ndarray, rows: Mapping[str, np.ndarray], stored: np.ndarray, rebalance: str,
                seed: int) -> float:
    """The largest difference between the committed linear probe's probabilities and the probe refitted on
    these features by its rule (float64 here, its Keras head in float32 there)."""
    refitted = np.stack([shortcuts.probe_out_of_fold(features, rows["label"], rows["patient"], folds, rebalance,
                                                     seed)[0] for folds in rows["fold"]])
    return float(np.max(np.abs(1 / (1 + np.exp(-refitted)) - stored)))


def stratified(rankers: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray], facts: Mapping[str, np.ndarray],
               resamples: int, seed: int) -> list[dict[str, Any]]:
    """Each ranker's ROC AUC on all images and inside every source type, pooled site and view."""
    everything = [(ALL_IMAGES, f"all {len(rows['label'])} images", np.ones(len(rows["label"]), bool))]
    out = []
    for kind, name, inside in everything + shortcuts.strata({k: facts[k] for k in (SOURCE_TYPE, SITE, VIEW)}):
        for ranker, scores in rankers.items():
            out.append({"kind": kind, "stratum": name, "model": ranker,
                        **shortcuts.within_stratum(rows["label"], scores, inside, rows["patient"], resamples, seed)})
    return out


def leave_one_site_out(site_runs: Sequence[ModelRun], ingest_rows: Mapping[str, Mapping[str, str]],
                       resamples: int, seed: int) -> list[dict[str, Any]]:
    """Each `--split=site` run: pooled ROC AUC over the held-out sites, age + sex on the same folds, their
    paired difference, and the ROC AUC within each held-out site that holds both outcomes."""
    out = []
    for run in site_runs:
        summary = train_outputs.read_summary(run.run_dir)
        if summary["split"] != "site":
            raise PipelineError(f"--audit_site: {run.run_dir} was split by {summary['split']}, not by site")
        predictions = train_outputs.read_predictions(run.run_dir)
        observed = predictions["label_source"] == "observed"
        rows = {name: values[observed] for name, values in predictions.items()}
        labels, patients, folds = rows["label"].astype(int), rows["patient"], rows["fold"]
        admission = clinical_baseline.admission_features([ingest_rows[str(sid)] for sid in rows["source_id"]])
        age_sex = clinical_baseline.out_of_fold(admission, labels, folds)
        gain = shortcuts.paired_gain(labels, age_sex, rows["probability"], patients, resamples, seed)
        out.append({"model": run.name, "held_out": "all sites, pooled", "age_sex_roc_auc": gain["roc_auc_first"],
                    "minus_age_sex": gain["difference"], "minus_age_sex_low": gain["low"],
                    "minus_age_sex_high": gain["high"],
                    **shortcuts.within_stratum(labels, rows["probability"], np.ones(len(labels), bool), patients,
                                               resamples, seed)})
        for fold, site in enumerate(summary["site_of_fold"]):
            out.append({"model": run.name, "held_out": site, **shortcuts.within_stratum(
                labels, rows["probability"], folds == fold, patients, resamples, seed)})
    return out


def run(examples: input_pipeline.Examples, ingest_rows: Mapping[str, Mapping[str, str]], data_dir: Path,
        model_runs: Sequence[ModelRun], site_runs: Sequence[ModelRun], weights: str, resamples: int,
        eval_seed: int) -> dict[str, Any]:
    """Every measure of the rules, on the committed runs' folds; returns the audit's record (JSON-able)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    params = fold_params(model_runs)
    train_params = train_outputs.read_summary(model_runs[0].run_dir)["params"]
    rows = population(examples, params)
    predictions = {run.name: model_predictions(run, rows) for run in model_runs}
    facts = row_facts(rows, origins_lib.read_origins(data_dir), ingest_rows)
    baselines = no_pixel_baselines(rows, facts)
    check_age_sex(baselines[AGE_SEX], rows, model_runs)
    seconds["joining, checks and no-pixel baselines"] = time.perf_counter() - started

    started = time.perf_counter()
    features, weights_description = frozen_features(examples, weights, train_params["weights_mode"],
                                                    train_params["image_size"], train_params["eval_batch_size"])
    features = features[rows["order"]]
    seconds["frozen features"] = time.perf_counter() - started
    started = time.perf_counter()
    probes = provenance_probes(features, rows, facts, params["rebalance"], params["seed"], resamples, eval_seed)
    probe_runs = [run for run in model_runs if train_outputs.read_summary(run.run_dir)["params"].get("method")
                  == "linear_probe"]
    check = (probe_check(features, rows, predictions[probe_runs[0].name], params["rebalance"], params["seed"])
             if probe_runs else math.nan)
    seconds["provenance probes"] = time.perf_counter() - started

    started = time.perf_counter()
    best = shortcuts.best_baseline(baselines, rows["label"])
    baseline_rows = [{"baseline": name, "best": name == best,
                      **shortcuts.bootstrap(shortcuts.mean_auc(rows["label"], scores), rows["patient"], resamples,
                                            eval_seed)} for name, scores in baselines.items()]
    gains = [{"model": name, "baseline": best,
              **shortcuts.paired_gain(rows["label"], baselines[best], scores, rows["patient"], resamples, eval_seed)}
             for name, scores in predictions.items()]
    strata = stratified({**predictions, AGE_SEX: baselines[AGE_SEX]}, rows, facts, resamples, eval_seed)
    site_split = leave_one_site_out(site_runs, ingest_rows, resamples, eval_seed)
    seconds["bootstrap"] = time.perf_counter() - started
    return {"population": {"images": int(len(rows["label"])), "image_deaths": int(rows["label"].sum()),
                           "patients": int(len(np.unique(rows["patient"]))),
                           "patient_deaths": int(len(np.unique(rows["patient"][rows["label"] == 1])))},
            "fold_params": params, "resamples": resamples, "bootstrap_seed": eval_seed,
            "probe_rebalance": params["rebalance"], "weights_description": weights_description,
            "feature_count": int(features.shape[1]),
            "feature_check_max_probability_difference": check,
            "provenance_probes": probes, "no_pixel_baselines": baseline_rows, "best_no_pixel_baseline": best,
            "paired_gain": gains, "within_stratum": strata, "leave_one_site_out": site_split,
            "site_split_given": bool(site_runs),
            "seconds": {name: round(value, 1) for name, value in seconds.items()}}
