"""The shortcut audit's record as `shortcut_audit.md` (one section per measure of the rules) and
`shortcut_audit.csv` (one row per number, for checking and re-plotting); nothing here computes a statistic."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping

from common.files import atomic_open, write_text_atomic
from components.evaluate import shortcuts

CSV_FIELDS = ("section", "model", "kind", "stratum", "images", "image_deaths", "patients", "patient_deaths", "status",
              "estimate", "low", "high", "valid_resamples", "note")


def _interval(value: Mapping[str, Any], signed: bool = False) -> str:
    if math.isnan(value["estimate"]):
        return "–"
    form = "+.3f" if signed else ".3f"
    return f"{value['estimate']:{form}} ({value['low']:{form}} to {value['high']:{form}})"


def _cell(row: Mapping[str, Any]) -> str:
    if row["status"] == shortcuts.ONE_OUTCOME:
        return shortcuts.ONE_OUTCOME
    return _interval(row)


def markdown(record: Mapping[str, Any]) -> str:
    population = record["population"]
    lines = [f"Shortcut audit (issue #34; rules: results/README.md, \"Rules for the shortcut audit\"). "
             f"{population['images']} observed-label images of {population['patients']} patients "
             f"({population['image_deaths']} images of {population['patient_deaths']} patients who died); the "
             f"comparison table's {record['fold_params']['repeats']} x {record['fold_params']['folds']}-fold "
             f"patient-grouped folds (seed {record['fold_params']['seed']}), checked equal to every run's. Each "
             f"number is the mean over repeats of the pooled out-of-fold ROC AUC with its 95% interval "
             f"({record['resamples']:,} patient resamples, seed {record['bootstrap_seed']}, the same for every "
             f"repeat and row).", ""]
    lines += ["## Can the frozen features tell where an X-ray came from?", "",
              f"L2 logistic regression on the linear probe's {record['feature_count']} frozen features "
              f"({record['weights_description'].splitlines()[0]}), C by the probe's rule inside each training fold, "
              f"class weights as the probe's (`{record['probe_rebalance']}`). Above 0.5: the features carry the "
              f"provenance (a shortcut is available), not that a mortality model uses it.", "",
              "| target | classes (images / patients) | ROC AUC | C chosen (range over folds) |", "|---|---|---|---|"]
    for probe in record["provenance_probes"]:
        classes = ", ".join(f"{name} {n['images']}/{n['patients']}" for name, n in probe["classes"].items())
        chosen = [c for c in probe["c_chosen"] if not math.isnan(c)]
        span = f"{min(chosen):.3g} to {max(chosen):.3g}" if chosen else "–"
        lines.append(f"| {probe['target']} | {classes} | {_interval(probe)} | {span} |")
    lines += ["", "## No-pixel baselines of death", "",
              "Logistic regressions fitted on the training folds only (the site's death rate too: "
              "(deaths + r) / (patients + 1) of the training folds' patients).", "",
              "| baseline | ROC AUC | best |", "|---|---|---|"]
    for row in record["no_pixel_baselines"]:
        lines.append(f"| {row['baseline']} | {_interval(row)} | {'best' if row['best'] else ''} |")
    lines += ["", f"## The X-ray's paired gain over the best no-pixel baseline ({record['best_no_pixel_baseline']})",
              "", "Chosen on the same folds, which favours the baseline; paired patient-bootstrap interval.", "",
              "| model | ROC AUC, model | ROC AUC, baseline | model - baseline |", "|---|---|---|---|"]
    for gain in record["paired_gain"]:
        lines.append(f"| {gain['model']} | {gain['roc_auc_second']:.3f} | {gain['roc_auc_first']:.3f} | "
                     f"{gain['difference']:+.3f} ({gain['low']:+.3f} to {gain['high']:+.3f}) |")
    models = list(dict.fromkeys(row["model"] for row in record["within_stratum"]))
    lines += ["", "## ROC AUC within strata", "",
              "Inside each source type, pooled site and view (AP: any AP view; PA: PA; a blank view would be "
              "its own stratum, `unknown`, and the frontal selection keeps none); a stratum whose images all "
              "survived is listed, not scored.", "",
              "| stratum | images (deaths) | patients (died) | " + " | ".join(models) + " |",
              "|" + "---|" * (3 + len(models))]
    by_stratum: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for row in record["within_stratum"]:
        by_stratum.setdefault((row["kind"], row["stratum"]), {})[row["model"]] = row
    for (kind, stratum), cells in by_stratum.items():
        first = next(iter(cells.values()))
        lines.append(f"| {kind}: {stratum} | {first['images']} ({first['image_deaths']}) | {first['patients']} "
                     f"({first['patient_deaths']}) | " + " | ".join(_cell(cells[m]) for m in models) + " |")
    lines += ["", "## Leave one site out (`--split=site`)", ""]
    if not record["site_split_given"]:
        lines.append("Not run yet: a `pipeline.study --split=site` results folder, given as `--audit_site`, fills "
                     "this section.")
    else:
        lines += ["| model | held-out site | images (deaths) | patients (died) | ROC AUC | age + sex | "
                  "model - age + sex |", "|---|---|---|---|---|---|---|"]
        for row in record["leave_one_site_out"]:
            against = (f"{row['age_sex_roc_auc']:.3f} | {row['minus_age_sex']:+.3f} ({row['minus_age_sex_low']:+.3f} "
                       f"to {row['minus_age_sex_high']:+.3f})" if "age_sex_roc_auc" in row else "– | –")
            lines.append(f"| {row['model']} | {row['held_out']} | {row['images']} ({row['image_deaths']}) | "
                         f"{row['patients']} ({row['patient_deaths']}) | {_cell(row)} | {against} |")
    return "\n".join(lines) + "\n"


def csv_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for probe in record["provenance_probes"]:
        rows.append({"section": "provenance probe", "stratum": probe["target"], "status": shortcuts.SCORED,
                     **_numbers(probe)})
    for row in record["no_pixel_baselines"]:
        rows.append({"section": "no-pixel baseline", "model": row["baseline"], "status": shortcuts.SCORED,
                     "note": "best" if row["best"] else "", **_numbers(row)})
    for gain in record["paired_gain"]:
        rows.append({"section": "paired gain", "model": gain["model"], "status": shortcuts.SCORED,
                     "estimate": gain["difference"], "low": gain["low"], "high": gain["high"],
                     "valid_resamples": gain["valid_resamples"], "note": f"minus {gain['baseline']}"})
    for section, key in (("within stratum", "within_stratum"), ("leave one site out", "leave_one_site_out")):
        for row in record[key]:
            rows.append({"section": section, **{k: row.get(k) for k in ("model", "kind", "images", "image_deaths",
                                                                         "patients", "patient_deaths", "status")},
                         "stratum": row.get("stratum", row.get("held_out")), **_numbers(row)})
    return rows


def _numbers(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("estimate", "low", "high", "valid_resamples") if k in row}


def write(results_dir: Path, record: Mapping[str, Any], stem: str = "shortcut_audit") -> Path:
    """`<stem>.md` and `<stem>.csv` in `results_dir`; returns the path stem."""
    path = Path(results_dir) / stem
    write_text_atomic(path.with_suffix(".md"), markdown(record))
    with atomic_open(path.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(record))
    return path
