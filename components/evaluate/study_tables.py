"""The study's tables: Table 1 or 2 beside the paper's, what goes beyond the study, repeated
cross-validation, the imputation's effect and a re-run beside its earlier run, as CSV and Markdown; and the
small files of each run kept beside them (`python -m pipeline.study` writes them; nothing here trains or is
tuned: each cell is what its run produced).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.errors import PipelineError
from common.files import atomic_open, write_text_atomic
from components.evaluate import comparisons
from components.evaluate import repeats as evaluate_repeats
from components.evaluate.outputs import (AGE_SEX, EARLY_IMAGES, EARLY_OFFSET_DAYS, IMAGE_AGE_SEX, OBSERVED,
                                         OBSERVED_TTA, PATIENT_LEVEL)
from components.published import published_rows
from components.train import outputs as train_outputs

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


def imputation_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| original | imputed | arch | split | images (deaths) | ROC AUC original | ROC AUC imputed "
             "| imputed - original (95% CI) |", "|" + "---|" * 8]
    for row in rows:
        lines.append(f"| {row['original']} | {row['imputed']} | {row['arch']} | {row['split']} | {row['images']} "
                     f"({row['deaths']}) | {row['roc_auc_first']:.3f} | {row['roc_auc_second']:.3f} | "
                     f"{row['difference']:+.3f} ({row['low']:+.3f} to {row['high']:+.3f}) |")
    return "\n".join(lines) + "\n"


def rerun_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    first = rows[0]
    lines = [f"Before: {first['results_dir_before']} (git {first['git_commit_before'][:7]}); after: "
             f"{first['results_dir_after']} (git {first['git_commit_after'][:7]}). Pooled out-of-fold ROC AUC on the "
             "same observed-label images (each run's 95% bootstrap interval) and after - before with a paired "
             "interval (the same patient resamples for both runs).", "",
             "| variant | arch | split | images (deaths) | ROC AUC before | ROC AUC after | after - before (95% CI) "
             "| balanced accuracy before | balanced accuracy after |", "|" + "---|" * 9]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['arch']} | {row['split']} | {row['images']} ({row['deaths']}) | "
                     f"{row['roc_auc_first']:.3f} ({row['roc_auc_first_ci']}) | "
                     f"{row['roc_auc_second']:.3f} ({row['roc_auc_second_ci']}) | "
                     f"{row['difference']:+.3f} ({row['low']:+.3f} to {row['high']:+.3f}) | "
                     f"{row['balanced_accuracy_first']:.3f} | {row['balanced_accuracy_second']:.3f} |")
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


def write_table(path_stem: Path, rows, render=markdown) -> None:
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
    write_table(stem, table_rows(runs, table))
    write_table(results_dir / f"beyond_table{table}_{split}", beyond_rows(runs), beyond_markdown)
    effect = comparisons.imputation_effect(runs, resamples, seed)
    if effect:
        write_table(results_dir / f"imputation_effect_{split}", effect, imputation_markdown)
    repeated = repeated_rows(runs)
    if repeated:
        write_table(results_dir / f"repeated_table{table}_{split}", repeated, repeated_markdown)
    return stem


def keep_run_files(artifacts, folder: Path) -> None:
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
