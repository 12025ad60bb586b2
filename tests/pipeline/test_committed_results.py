"""The committed results (`results/`, written by pipeline.study, re-summarised by pipeline.resummarize): every
point estimate lies inside its own interval, in evaluation.json, the metric tables, the study tables and the
reports; the headline is the pooled out-of-fold estimate."""

import csv
import json
import math
import re

import pytest

from components import configs, report
from components.evaluate import component as evaluate
from components.evaluate import metrics as evaluate_metrics

RESULTS = configs.REPO_ROOT / "results"
EVALUATIONS = sorted(RESULTS.glob(f"*/*/{evaluate.EVALUATION_NAME}"))
NUMBER = r"([-+]?\d+\.\d+)"


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _inside(value, low, high, where, digits=None):
    if any(math.isnan(x) for x in (value, low, high)):
        return
    if digits is not None:  # printed numbers: compare as printed
        value = round(value, digits)
    assert low <= value <= high, f"{where}: {value} outside [{low}, {high}]"


def test_there_are_committed_results():
    assert len(EVALUATIONS) >= 20


@pytest.mark.parametrize("path", EVALUATIONS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_estimate_of_an_evaluation_lies_inside_its_interval(path):
    record = json.loads(path.read_text())
    observed = record["sets"][evaluate.OBSERVED]
    for name, value in record["metrics"].items():
        assert value["estimate"] == observed["pooled"][name] or math.isnan(value["estimate"])
        assert value["fold_mean"] == observed["fold_mean"][name]["mean"] or math.isnan(value["fold_mean"])
    for set_name, summary in record["sets"].items():
        for metric in evaluate_metrics.METRICS:
            interval = summary["bootstrap"]["intervals"][metric]
            _inside(summary["pooled"][metric], interval["low"], interval["high"], f"{path} {set_name} {metric}")
    calibration = observed["calibration"]
    for metric in ("ece", "slope", "intercept"):
        interval = calibration["intervals"][metric]
        _inside(calibration[metric], interval["low"], interval["high"], f"{path} calibration {metric}")
    for name, effect in (record.get("admission_comparison") or {}).items():
        if isinstance(effect, dict):
            _inside(effect["difference"], effect["low"], effect["high"], f"{path} {name}")
    for row in _rows(path.parent / evaluate.SUMMARY_NAME):
        _inside(*(float(row[k] or "nan") for k in ("estimate", "ci_low", "ci_high")), f"{path.parent} {row}")


def _interval(text):
    low, high = re.fullmatch(rf"{NUMBER}(?:-| to ){NUMBER}", text).groups()
    return float(low), float(high)


@pytest.mark.parametrize("path", sorted([*RESULTS.glob("*/*table*_*.csv"), *RESULTS.glob("*/comparison_*.csv"),
                                          *RESULTS.glob("*/rerun_*.csv")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_estimate_of_a_study_table_lies_inside_its_interval(path):
    checked = 0
    for row in _rows(path):
        for column, text in row.items():
            if column.endswith("_ci") and text:
                _inside(float(row[column.removesuffix("_ci")]), *_interval(text), f"{path} {column}", digits=3)
                checked += 1
            if column.endswith("_ci_low") and text:  # the repeated-CV tables: mean over repeats, low, high
                name = column.removesuffix("_ci_low")
                _inside(*(float(row[k]) for k in (name, column, f"{name}_ci_high")), f"{path} {name}")
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("path", sorted([*RESULTS.glob("*/imputation_effect_*.csv"), *RESULTS.glob("*/rerun_*.csv")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_paired_difference_lies_inside_its_interval(path):
    for row in _rows(path):
        _inside(float(row["difference"]), float(row["low"]), float(row["high"]), f"{path} {row}")


@pytest.mark.parametrize("path", sorted(RESULTS.glob(f"*/*/{report.REPORT_NAME}")),
                         ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_estimate_of_a_report_lies_inside_its_interval(path):
    page = path.read_text()
    body = page[page.index(f"<h2>{report.RESULTS_TITLE}</h2>"):page.index(f"<h2>{report.FIGURES_TITLE}</h2>")]
    patterns = (rf"<td>[^<\d][^<]*</td><td>{NUMBER}</td><td>{NUMBER} – {NUMBER}</td>",  # metric, estimate, CI
                rf"{NUMBER} \[{NUMBER}, {NUMBER}\]",  # the beyond-the-study tables
                rf"{NUMBER} \[{NUMBER} – {NUMBER}\]",  # calibration
                rf"{NUMBER} \({NUMBER} to {NUMBER}\)")  # the X-ray against age and sex
    found = [match.groups() for pattern in patterns for match in re.finditer(pattern, body)]
    assert len(found) >= 11 + 5 + 3 + 2
    for value, low, high in found:
        digits = len(value.split(".")[1])
        _inside(float(value), float(low), float(high), f"{path}", digits=digits)
