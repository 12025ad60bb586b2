"""`python -m pipeline.study`: the study's Table 1 (variants) or Table 2 (architectures), ours beside the paper's.

Runs the pipeline once per variant (and per `--archs` entry) with every other
flag of `pipeline.run`, reusing cached stages and finished folds, then writes
`table1_<split>.csv/.md` (or `table2_<split>.*`: each metric's pooled out-of-fold estimate, its
bootstrap interval and the fold mean +- sd), `beyond_table1_<split>.*` (patient-level ROC AUC,
first-week images, test-time augmentation, age and sex with and without the X-ray, calibration),
`imputation_effect_<split>.*`
(each imputed variant against its original on the same observed labels, when both ran),
with `--repeats`, `repeated_table1_<split>.*` (each metric's mean over repeats of the pooled
estimate, its interval and spread, beside the admission baselines refitted on the same folds) and
`provenance.json` into `--results_dir`. `--compare=<folders>` trains nothing: it puts the
repeated-CV rows of earlier studies (e.g. one per model) into one `comparison_<split>.*`.
Nothing is tuned here: each cell is what its run produced.
"""

from __future__ import annotations

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # first: before any import below loads TensorFlow

import csv
import dataclasses
import itertools
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import app, flags

from components import evaluate_metrics, evaluate_repeats
from common.errors import PipelineError
from common.files import atomic_open, sha256_file, write_json_atomic, write_text_atomic
from components.evaluate import (AGE_SEX, EARLY_IMAGES, EARLY_OFFSET_DAYS, EVALUATION_NAME, IMAGE_AGE_SEX,
                                 OBSERVED, OBSERVED_TTA, PATIENT_LEVEL)
from components.train import outputs as train_outputs
from components import configs
from components.published import published_rows
from pipeline import local_runner
from pipeline import run as run_flags  # noqa: F401  (defines the shared flags)
from pipeline.pipeline import create_pipeline
from pipeline.provenance import git_commit

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", list(configs.VARIANTS), "Variants to run (Table 1).")
flags.DEFINE_list("archs", None, "Architectures to run on the first variant (Table 2); default: Table 1 only.")
flags.DEFINE_string("results_dir", "results", "Where the tables and provenance are written.")
flags.DEFINE_list("compare", None, "Results folders of earlier studies with --repeats: train nothing, write their "
                  "repeated-CV rows as one table, comparison_<split>.csv/.md, into --results_dir.")

COLUMNS = ("balanced_accuracy", "roc_auc", "precision", "recall", "f1", "tpr", "tnr", "fpr", "fnr")


def table_rows(runs: Sequence[Mapping[str, Any]], table: str) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        metrics = run["evaluation"]["metrics"]
        ours = {"source": "ours", "variant": run["variant"], "arch": run["arch"], "split": run["split"]}
        for name in COLUMNS:
            ours[name] = metrics[name]["estimate"]
            ours[f"{name}_ci"] = f"{metrics[name]['ci_low']:.3f}-{metrics[name]['ci_high']:.3f}"
            ours[f"{name}_folds"] = f"{metrics[name]['fold_mean']:.3f}±{metrics[name]['fold_std']:.3f}"
        rows.append(ours)
        paper = published_rows(run["variant"], run["arch"], table).get("test")
        if paper:  # the paper ran no probe, LP-FT or stage-3 model
            rows.append({"source": "paper", "variant": run["variant"], "arch": run["arch"], "split": "image",
                         **{name: float(paper[name]) if paper.get(name) else None for name in COLUMNS}})
    return rows


BEYOND_SETS = {  # evaluation set -> column title; each on observed labels only
    OBSERVED: "images (headline)", PATIENT_LEVEL: "patients (mean of their images)",
    EARLY_IMAGES: f"images of the first {EARLY_OFFSET_DAYS} days", OBSERVED_TTA: "images, TTA",
    AGE_SEX: "age + sex alone", IMAGE_AGE_SEX: "image + age + sex"}
CALIBRATION_COLUMNS = ("ece", "slope", "intercept", "brier", "base_rate")


def beyond_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What goes beyond the study, per run: pooled ROC AUC of images, of patients, of first-week images, with
    test-time augmentation, of age and sex alone and with the image, the X-ray's gain over age and sex, and the
    calibration of the image-level probabilities; a set the run did not compute stays empty."""
    rows = []
    for run in runs:
        evaluation = run["evaluation"]
        sets = evaluation["sets"]
        row = {"variant": run["variant"], "arch": run["arch"], "split": run["split"]}
        for name in BEYOND_SETS:
            if name in sets:
                interval = sets[name]["bootstrap"]["intervals"]["roc_auc"]
                row[f"roc_auc_{name}"] = sets[name]["pooled"]["roc_auc"]
                row[f"roc_auc_{name}_ci"] = f"{interval['low']:.3f}-{interval['high']:.3f}"
        if evaluation.get("admission_comparison"):
            gain = evaluation["admission_comparison"]["image_minus_age_sex"]
            row["image_minus_age_sex"] = gain["difference"]
            row["image_minus_age_sex_ci"] = f"{gain['low']:+.3f} to {gain['high']:+.3f}"
        calibration = sets[OBSERVED]["calibration"]
        row.update({name: calibration[name] for name in CALIBRATION_COLUMNS})
        intervals = calibration["intervals"]
        row.update({f"{name}_ci": f"{intervals[name]['low']:.3f} to {intervals[name]['high']:.3f}"
                    for name in ("ece", "slope", "intercept")})
        rows.append(row)
    return rows


def beyond_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    titles = ([f"ROC AUC, {title}" for title in BEYOND_SETS.values()]
              + ["image - age/sex", "ECE", "calibration slope", "calibration intercept", "Brier", "base rate"])
    lines = ["| variant | arch | split | " + " | ".join(titles) + " |", "|" + "---|" * (3 + len(titles))]
    for row in rows:
        cells = [f"{row[f'roc_auc_{n}']:.3f} ({row[f'roc_auc_{n}_ci']})" if f"roc_auc_{n}" in row else "–"
                 for n in BEYOND_SETS]
        cells.append(f"{row['image_minus_age_sex']:+.3f} ({row['image_minus_age_sex_ci']})"
                     if "image_minus_age_sex" in row else "–")
        cells += [f"{row[name]:.3f} ({row[f'{name}_ci']})" for name in ("ece", "slope", "intercept")]
        cells += [f"{row[name]:.3f}" for name in ("brier", "base_rate")]
        lines.append(f"| {row['variant']} | {row['arch']} | {row['split']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


REPEATED_COLUMNS = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "brier": "Brier",
                    "calibration_slope": "calibration slope"}
GOAL_ROC_AUC, GOAL_LOWER_END = 0.80, 0.70  # issue #15: ROC AUC >= 0.80 with the interval's lower end above 0.70


def _repeated_row(model: str, run: Mapping[str, Any], summary: Mapping[str, Any], repeats: int) -> dict[str, Any]:
    row = {"model": model, "variant": run["variant"], "arch": run["arch"], "split": run["split"], "repeats": repeats,
           "train_seconds": run.get("train_seconds"), "command": run.get("command", "")}
    for name in REPEATED_COLUMNS:
        m = summary["metrics"][name]
        row.update({name: m["mean"], f"{name}_ci_low": m["ci_low"], f"{name}_ci_high": m["ci_high"]})
    auc = summary["metrics"]["roc_auc"]
    row.update({"roc_auc_sd": auc["sd"], "roc_auc_min": auc["min"], "roc_auc_max": auc["max"],
                "goal_met": bool(auc["mean"] >= GOAL_ROC_AUC and auc["ci_low"] > GOAL_LOWER_END)})
    return row


def repeated_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every run with repeated CV: per metric, the mean over repeats of the pooled out-of-fold estimate with
    its patient-bootstrap interval, and ROC AUC's spread over repeats; then the admission baselines: image +
    age + sex per run, and age + sex alone once (it sees no image, so runs on the same folds agree on it; runs
    on other folds are refused, as they could not be compared)."""
    rows, age_sex = [], None
    for run in runs:
        repeated = run["evaluation"].get("repeated_cv")
        if not repeated:
            continue
        row = _repeated_row(run["arch"], run, repeated, repeated["repeats"])
        gain = repeated.get("image_minus_age_sex")
        if gain:
            row.update({"image_minus_age_sex": gain["difference"], "image_minus_age_sex_ci_low": gain["low"],
                        "image_minus_age_sex_ci_high": gain["high"]})
        rows.append(row)
        baselines = repeated.get("baselines")
        if not baselines:
            continue
        combined = baselines[evaluate_repeats.IMAGE_AGE_SEX]
        rows.append({**_repeated_row(f"image + age + sex ({run['arch']})", run, combined, repeated["repeats"]),
                     "train_seconds": None})
        if age_sex is None:
            age_sex = (run, baselines[evaluate_repeats.AGE_SEX], repeated)
        elif ([r["roc_auc"] for r in age_sex[1]["per_repeat"]]
              != [r["roc_auc"] for r in baselines[evaluate_repeats.AGE_SEX]["per_repeat"]]
              or age_sex[2]["split_seeds"] != repeated["split_seeds"]):
            raise PipelineError(f"{run['arch']} and {age_sex[0]['arch']} were cross-validated on other folds "
                                f"(their age + sex baselines differ): their repeated-CV rows are not comparable")
    if age_sex:
        run, summary, repeated = age_sex
        rows.append({**_repeated_row("age + sex (logistic regression)", run, summary, repeated["repeats"]),
                     "arch": "-", "train_seconds": None, "command": ""})
    return rows


def repeated_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"Mean over repeats of the pooled out-of-fold estimate (95% bootstrap interval, the same resamples "
             f"for every repeat and row); goal: ROC AUC >= {GOAL_ROC_AUC:.2f} with the interval's lower end above "
             f"{GOAL_LOWER_END:.2f}.", "",
             "| model | variant | split | repeats | " + " | ".join(REPEATED_COLUMNS.values())
             + " | ROC AUC sd / range over repeats | ROC AUC - age + sex alone (paired) | goal met | training s |",
             "|" + "---|" * 12]
    for row in rows:
        cells = [f"{row[n]:.3f} ({row[f'{n}_ci_low']:.3f} to {row[f'{n}_ci_high']:.3f})" for n in REPEATED_COLUMNS]
        seconds = "–" if row["train_seconds"] is None else f"{row['train_seconds']:,.0f}"
        gain = (f"{row['image_minus_age_sex']:+.3f} ({row['image_minus_age_sex_ci_low']:+.3f} to "
                f"{row['image_minus_age_sex_ci_high']:+.3f})" if "image_minus_age_sex" in row else "–")
        lines.append(f"| {row['model']} | {row['variant']} | {row['split']} | {row['repeats']} | " + " | ".join(cells)
                     + f" | {row['roc_auc_sd']:.3f} / {row['roc_auc_min']:.3f}-{row['roc_auc_max']:.3f} | {gain} | "
                     f"{'yes' if row['goal_met'] else 'no'} | {seconds} |")
    return "\n".join(lines) + "\n"


def imputation_pairs() -> list[tuple[str, str]]:
    """(original variant, imputed variant) with the same balancing, e.g. (original_weights, imputed_weights)."""
    by_balancing = {}
    for variant, (labels, balancing) in configs.VARIANTS.items():
        by_balancing.setdefault(balancing, {})[labels] = variant
    return [(pair["observed"], pair["observed+imputed"]) for pair in by_balancing.values()]


def _observed_by_source_id(train_dir: Path) -> dict[str, tuple[str, int, float]]:
    predictions = train_outputs.read_predictions(train_dir)
    columns = zip(*(predictions[k] for k in ("source_id", "patient", "label", "label_source", "probability")))
    return {str(sid): (str(patient), int(label), float(probability))
            for sid, patient, label, source, probability in columns if source == "observed"}


def imputation_effect(runs: Sequence[Mapping[str, Any]], resamples: int, seed: int) -> list[dict[str, Any]]:
    """What training on imputed labels does to the ranking of the observed ones: for each balancing run both
    ways, pooled out-of-fold ROC AUC of both variants on the same observed-label images and the difference,
    imputed - original, with a paired bootstrap interval (patients resampled under a patient split)."""
    by_key = {(run["variant"], run["arch"]): run for run in runs}
    rows = []
    archs = dict.fromkeys(run["arch"] for run in runs)
    for (original, imputed), arch in itertools.product(imputation_pairs(), archs):
        if (original, arch) not in by_key or (imputed, arch) not in by_key:
            continue
        first = _observed_by_source_id(Path(by_key[original, arch]["artifacts"]["train"]))
        second = _observed_by_source_id(Path(by_key[imputed, arch]["artifacts"]["train"]))
        if first.keys() != second.keys():
            raise PipelineError(f"{original} and {imputed} ({arch}) scored different observed images, e.g. "
                                f"{sorted(first.keys() ^ second.keys())[0]!r}: their runs are not comparable")
        ids = sorted(first)
        labels = np.array([first[sid][1] for sid in ids])
        split = by_key[original, arch]["split"]
        groups = np.array([first[sid][0] if split == "patient" else sid for sid in ids])
        effect = evaluate_metrics.paired_auc_difference(
            labels, np.array([first[sid][2] for sid in ids]), np.array([second[sid][2] for sid in ids]), groups,
            resamples, seed)
        rows.append({"original": original, "imputed": imputed, "arch": arch, "split": split,
                     "images": len(ids), "deaths": int(labels.sum()), **effect})
    return rows


def imputation_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| original | imputed | arch | split | images (deaths) | ROC AUC original | ROC AUC imputed "
             "| imputed - original (95% CI) |", "|" + "---|" * 8]
    for row in rows:
        lines.append(f"| {row['original']} | {row['imputed']} | {row['arch']} | {row['split']} | {row['images']} "
                     f"({row['deaths']}) | {row['roc_auc_first']:.3f} | {row['roc_auc_second']:.3f} | "
                     f"{row['difference']:+.3f} ({row['low']:+.3f} to {row['high']:+.3f}) |")
    return "\n".join(lines) + "\n"


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    header = "| variant | arch | source | " + " | ".join(COLUMNS) + " |"
    lines = ["Ours: pooled out-of-fold estimate (95% bootstrap interval; folds: mean±sd over the validation folds).",
             "", header, "|" + "---|" * (3 + len(COLUMNS))]
    for row in rows:
        cells = []
        for name in COLUMNS:
            value = row.get(name)
            text = "–" if value is None else f"{value:.3f}"
            if row.get(f"{name}_ci"):
                text += f" ({row[f'{name}_ci']}; folds {row[f'{name}_folds']})"
            cells.append(text)
        source = "ours" if row["source"] == "ours" else "paper"
        lines.append(f"| {row['variant']} | {row['arch']} | {source} ({row['split']} split) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_table(path_stem: Path, rows, render=markdown) -> None:
    fields = sorted({k for row in rows for k in row}, key=lambda k: (k not in ("source", "variant", "arch", "split"), k))
    with atomic_open(path_stem.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomic(path_stem.with_suffix(".md"), render(rows))


def write_tables(results_dir: Path, table: str, split: str, runs: Sequence[Mapping[str, Any]], resamples: int,
                 seed: int) -> Path:
    """Table 1 or 2, the beyond-the-study table and, when pairs ran, the imputation's effect; returns the
    table's path stem."""
    stem = results_dir / f"table{table}_{split}"
    _write_table(stem, table_rows(runs, table))
    _write_table(results_dir / f"beyond_table{table}_{split}", beyond_rows(runs), beyond_markdown)
    effect = imputation_effect(runs, resamples, seed)
    if effect:
        _write_table(results_dir / f"imputation_effect_{split}", effect, imputation_markdown)
    repeated = repeated_rows(runs)
    if repeated:
        _write_table(results_dir / f"repeated_table{table}_{split}", repeated, repeated_markdown)
    return stem


def _keep_small_files(artifacts, folder: Path) -> None:
    """The report, metrics and figures of one run, copied beside the tables (no models, no images)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {"report": ["report.html"], "evaluate": ["evaluation.json", "metrics_per_fold.csv",
                                                      "metrics_summary.csv", "decision_curve.csv",
                                                      evaluate_repeats.TABLE_NAME,
                                                      "predictions_tta.csv", "*.png"],
               "train": [train_outputs.SUMMARY, train_outputs.fold_glob(train_outputs.PREDICTIONS_CSV),
                         train_outputs.fold_glob(train_outputs.HISTORY_CSV),
                         train_outputs.repeat_fold_glob(train_outputs.PREDICTIONS_CSV)]}
    for stage, patterns in sources.items():
        for pattern in patterns:
            for path in artifacts[stage].path.glob(pattern):
                target = folder / path.relative_to(artifacts[stage].path)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)


def machine() -> dict[str, Any]:
    """What the timings were measured on: CPU model, cores, GPUs."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpus = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "arch": platform.machine()}


def data_provenance(artifacts: Mapping[str, Any]) -> dict[str, Any]:
    """Which snapshot the runs read (sha256 over metadata.csv and every image) and what ingest kept of it."""
    return {"fingerprint": artifacts["data"].fingerprint, "ingest_counts": artifacts["ingest"].record["counts"]}


def committed_runs(results_dir: Path) -> list[dict[str, Any]]:
    """The runs a study wrote into `results_dir` (its provenance files and each run's evaluation.json), each
    with the command line and commit that made it."""
    if not results_dir.is_dir():
        raise PipelineError(f"--compare: {results_dir} is not a folder")
    runs = []
    for provenance_path in sorted(results_dir.glob("provenance_table*_*.json")):
        provenance = json.loads(provenance_path.read_text())
        for run in provenance["runs"]:
            evaluation_path = results_dir / f"{run['variant']}_{run['arch']}_{run['split']}" / EVALUATION_NAME
            if not evaluation_path.is_file():
                raise PipelineError(f"--compare: {evaluation_path} is missing, though {provenance_path.name} lists "
                                    f"the run")
            runs.append({**run, "evaluation": json.loads(evaluation_path.read_text()),
                         "command": provenance["command"], "git_commit": provenance["git_commit"]})
    if not runs:
        raise PipelineError(f"--compare: {results_dir} holds no study provenance (provenance_table*_*.json)")
    return runs


def compare(folders: Sequence[str], results_dir: Path, command: str) -> Path:
    """The repeated-CV rows of earlier studies as one table, with what made each; returns its path stem."""
    sourced = [(folder, run) for folder in folders for run in committed_runs(Path(folder))]
    splits = sorted({run["split"] for _, run in sourced})
    if len(splits) > 1:
        raise PipelineError(f"--compare: the folders hold runs of other splits ({', '.join(splits)}); "
                            f"compare runs of one split")
    single = [f"{run['variant']} {run['arch']} ({folder})" for folder, run in sourced
              if "repeated_cv" not in run["evaluation"]]
    if single:
        raise PipelineError(f"--compare: no repeated cross-validation in {', '.join(single)}; run it with --repeats")
    stem = results_dir / f"comparison_{splits[0]}"
    results_dir.mkdir(parents=True, exist_ok=True)
    _write_table(stem, repeated_rows([run for _, run in sourced]), repeated_markdown)
    write_json_atomic(results_dir / f"provenance_comparison_{splits[0]}.json", {
        "command": command, "git_commit": git_commit(),
        "sources": [{"results_dir": folder, **{k: run[k] for k in ("arch", "variant", "command", "git_commit",
                                                                  "train_seconds")}} for folder, run in sourced]})
    return stem


def main(argv):
    del argv
    command = " ".join([Path(sys.executable).name, "-m", "pipeline.study", *sys.argv[1:]])
    if FLAGS.compare:
        try:
            stem = compare(FLAGS.compare, Path(FLAGS.results_dir), command)
        except PipelineError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {stem}.csv and {stem}.md")
        return 0
    base_config = run_flags.config_from_flags()
    commit = git_commit()  # the code that runs, read before any later edit of the tree
    unknown = [v for v in FLAGS.variants if v not in configs.VARIANTS]
    if unknown:
        print(f"error: --variants: unknown {unknown}; choose from {list(configs.VARIANTS)}", file=sys.stderr)
        return 2
    plan = [(variant, base_config.train.arch) for variant in FLAGS.variants]
    table = "1"
    if FLAGS.archs:
        table = "2"
        plan = [(FLAGS.variants[0], arch) for arch in FLAGS.archs]
    results_dir = Path(FLAGS.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    runs, data = [], None
    for position, (variant, arch) in enumerate(plan, start=1):
        print(f"=== [{position}/{len(plan)}] variant {variant}, arch {arch}, split {base_config.train.split}")
        config = dataclasses.replace(base_config, variant=variant,
                                     train=dataclasses.replace(base_config.train, arch=arch))
        started = time.time()
        try:
            artifacts = local_runner.run_pipeline(create_pipeline(config))
        except PipelineError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        evaluation = json.loads((artifacts["evaluate"].path / EVALUATION_NAME).read_text())
        model = arch if config.train.method == "fine_tune" else f"{arch}+{config.train.method}"
        _keep_small_files(artifacts, results_dir / f"{variant}_{model}_{config.train.split}")
        data = data_provenance(artifacts)
        runs.append({"variant": variant, "arch": model, "split": config.train.split, "evaluation": evaluation,
                     "command": command,
                     "wall_seconds_this_invocation": round(time.time() - started, 1),
                     "train_seconds": artifacts["train"].record.get("seconds"),
                     "artifacts": {k: str(a.path) for k, a in artifacts.items() if k != "data"}})
    stem = write_tables(results_dir, table, base_config.train.split, runs, base_config.evaluate.bootstrap_resamples,
                        base_config.evaluate.seed)
    weights = base_config.train.weights
    write_json_atomic(results_dir / f"provenance_table{table}_{base_config.train.split}.json", {
        "command": command, "git_commit": commit, "seed": base_config.train.seed,
        "weights": weights, "weights_sha256": sha256_file(Path(weights)) if weights else None,
        "data_dir": str(base_config.data_dir), "data": data, "machine": machine(),
        "python": platform.python_version(),
        "runs": [{k: v for k, v in r.items() if k not in ("evaluation", "command")} for r in runs],
    })
    print(f"wrote {stem}.csv and {stem}.md")
    return 0


if __name__ == "__main__":
    app.run(main)
