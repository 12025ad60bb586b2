"""The external validation's `report.html`: self-contained, in the order a site's data team reads it.

Is the site big enough (Riley et al.'s events), who its patients are beside the development data, how well the model
ranks them, whether its risks can be read as risks (the calibration hierarchy), what acting on it would gain (the
decision curve and the rule's sensitivity, specificity, PPV and NPV), where it fails (subgroups) and, with an update,
what the update does on patients it was not fitted on. Built with `components/report.py`'s helpers and style.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping, Sequence

from components import model_card
from components.report import DECISION_ROWS, NOTICE, STYLE, _fmt, _image, _table
from components.validate import CALIBRATION_FIGURE, DECISION_FIGURE

REPORT_NAME = "report.html"

DISCRIMINATION = (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"))
CALIBRATION = (("o_e_ratio", "Observed / expected deaths (1 = ideal)"),
               ("calibration_in_the_large", "Calibration-in-the-large (0 = ideal; below 0, risks too high)"),
               ("calibration_slope", "Calibration slope (1 = ideal; below 1, risks too extreme)"),
               ("brier", "Brier score"))
DECISION_RULE = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"), ("npv", "NPV"))
SUBGROUP_STATISTICS = ("roc_auc", "o_e_ratio", "calibration_slope", "sensitivity", "specificity")


def _with_interval(summary: Mapping[str, Any], name: str, digits: int = 3) -> str:
    interval = summary["intervals"][name]
    return (f"{_fmt(summary['estimate'][name], digits)} "
            f"[{_fmt(interval['low'], digits)}, {_fmt(interval['high'], digits)}]")


def statistics_table(rows: Sequence[tuple[str, str]], columns: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per statistic, one column per set (images, patients, ...), estimate [95% interval]."""
    return _table(["Estimate [95% interval, patients resampled]", *columns],
                  [[title, *(_with_interval(summary, name) for summary in columns.values())] for name, title in rows])


def case_mix_section(mix: Mapping[str, Any]) -> str:
    site_rows = model_card.case_mix_rows(mix["site"])
    if not mix.get("development"):
        return (_table(["", "This site"], [[html.escape(k), html.escape(v)] for k, v in site_rows])
                + "<p class=muted>The model's card records no development case mix (a model exported before it "
                  "was recorded): compare by hand with its training data.</p>")
    development = dict(model_card.case_mix_rows(mix["development"]))
    return _table(["", "This site", "Development data (model card)"],
                  [[html.escape(k), html.escape(v), html.escape(development.get(k, "–"))] for k, v in site_rows])


def calibration_section(record: Mapping[str, Any], out_dir: Path) -> str:
    images = record["images"]
    text = (f"<p>Mean predicted risk {images['mean_predicted']:.3f} against an observed death rate of "
            f"{images['observed_rate']:.3f} (images). The calibration hierarchy (Van Calster et al. 2016): "
            "first whether risks are right on average, then whether they are too extreme or too modest, then "
            "whether they are right along the whole range. No Hosmer-Lemeshow test: it gives no size or direction "
            "of miscalibration.</p>")
    text += statistics_table(CALIBRATION, {"Images": images, "Patients": record["patients"]})
    figure = out_dir / CALIBRATION_FIGURE
    if figure.is_file():
        text += _image(figure, f"Flexible calibration curve: {record['calibration_curve']['method']}; below, the "
                               "predicted risks", False)
    return text


def decision_section(record: Mapping[str, Any], out_dir: Path) -> str:
    threshold = record["threshold"]
    text = (f"<p><b>The model's decision rule</b> (class 'died' when the served probability ≥ {threshold:g}):</p>"
            + statistics_table(DECISION_RULE, {"Images": record["images"], "Patients": record["patients"]}))
    curve = {row["threshold"]: row for row in record["images"]["decision_curve"]["rows"]}
    text += ("<p><b>Decision curve</b> (evaluate's code): net benefit of treating every image with p ≥ t, "
             "against treating all and none.</p>"
             + _table(["Threshold", "Treat all", "Treat none", "Model"],
                      [[f"{t:.0%}", _fmt(curve[t]["treat_all"]), _fmt(0.0), _fmt(curve[t]["model"])]
                       for t in DECISION_ROWS if t in curve]))
    figure = out_dir / DECISION_FIGURE
    if figure.is_file():
        text += _image(figure, "Decision curve at this site, 5-50%", False)
    return text


def subgroup_section(record: Mapping[str, Any]) -> str:
    names = {"roc_auc": "ROC AUC", "o_e_ratio": "O/E", "calibration_slope": "Slope", "sensitivity": "Sensitivity",
             "specificity": "Specificity"}
    rows = []
    for name, group in record["subgroups"].items():
        if group["computed"]:
            rows.append([html.escape(name), group["n"], group["events"],
                         *(_with_interval(group, statistic, 2) for statistic in SUBGROUP_STATISTICS)])
        else:
            rows.append([html.escape(name), group["n"], group["events"],
                         *(["too few of one outcome"] + ["–"] * (len(SUBGROUP_STATISTICS) - 1))])
    return (f"<p>Rule: {html.escape(record['subgroup_rule'])}.</p>"
            + _table(["Subgroup", "Images", "Images of deaths", *(names[s] for s in SUBGROUP_STATISTICS)], rows))


def update_section(update: Mapping[str, Any] | None, pushed: Mapping[str, Any] | None) -> str:
    if update is None:
        return "<p>No update requested (<code>--update=intercept|logistic|auto</code>).</p>"
    tests = update["closed_test"]["tests"]
    text = _table(["Likelihood-ratio test", "df", "statistic", "p"],
                  [[f"{t['null']} vs {t['alternative']}", t["df"], _fmt(t["statistic"], 2), _fmt(t["p_value"], 4)]
                   for t in tests])
    text += (f"<p>Closed testing (Vergouwe et al. 2017) would choose <b>{update['closed_test']['chosen']}</b>; "
             f"chosen by {html.escape(update['chosen_by'])}: <b>{update['method']}</b>.</p>")
    if "note" in update:
        return text + f"<p>{html.escape(update['note'])}.</p>"
    text += (f"<p>Updated probability = sigmoid({update['intercept']:.4f} + {update['slope']:.4f} · logit(served "
             "probability)). The apparent figures judge the update on the patients it was fitted on (optimistic); "
             f"the cross-validated ones on patients it was not fitted on ({html.escape(update['cross_validation'])}): "
             "read those.</p>")
    text += statistics_table((*CALIBRATION, *DISCRIMINATION[:1]),
                             {"Apparent (images)": update["apparent"],
                              "Cross-validated (images)": update["cross_validated_summary"]})
    if pushed:
        text += (f"<p>Pushed as version {pushed['pushed_version']} of <code>{html.escape(pushed['model_name'])}</code>: "
                 f"<code>{html.escape(pushed['pushed_to'])}</code>; its model card names site "
                 f"<code>{html.escape(pushed['site'])}</code>, {pushed['date']}.</p>")
    return text


def render(record: Mapping[str, Any], out_dir: Path) -> str:
    """The page; figures from `out_dir` are embedded."""
    model = record["model"]
    parts = [f"<h1>External validation — site <code>{html.escape(record['site'] or 'unnamed')}</code></h1>",
             f'<div class="notice">{html.escape(NOTICE)}</div>',
             f"<p>Model <code>{html.escape(model['saved_model'])}</code>"
             + (f" ({html.escape(model['name'])}: {html.escape(model['status'])})" if model.get("name") else "")
             + f"; data <code>{html.escape(record['data_dir'])}</code>.</p>"]
    if model.get("status", "").startswith("DEMO"):
        parts.append(f'<div class="warn">{html.escape(model["status"])}</div>')
    images, patients = record["images"], record["patients"]
    parts += [
        "<h2>Is this site enough?</h2>", f"<p>{html.escape(record['events'])}</p>",
        f"<p>{images['n']} images of {images['patients']} patients scored ({images['events']} images of patients "
        f"who died; {patients['events']} patients died); {len(record['not_scored'])} labelled image(s) not scored "
        "(listed at the end). Every interval is a 95% bootstrap interval drawing whole patients "
        f"({record['bootstrap_resamples']} resamples).</p>",
        "<h2>Case mix</h2>", case_mix_section(record["case_mix"]),
        "<h2>Discrimination</h2>", statistics_table(DISCRIMINATION, {"Images": images, "Patients": patients}),
        "<h2>Calibration</h2>", calibration_section(record, out_dir),
        "<h2>Clinical usefulness</h2>", decision_section(record, out_dir),
        "<h2>Subgroups</h2>", subgroup_section(record),
        "<h2>Model update</h2>", update_section(record.get("update"), record.get("pushed")),
    ]
    if record["not_scored"]:
        parts += ["<h2>Images not scored</h2>",
                  _table(["Image", "Why"], [[html.escape(r["source_id"]), html.escape(r["error"])]
                                            for r in record["not_scored"]])]
    parts += ["<h2>How this was made</h2>",
              _table(["", ""], [[html.escape(k), f"<code>{html.escape(str(v))}</code>"]
                                for k, v in record["provenance"].items()])]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>External validation — "
            f"{html.escape(record['site'] or 'site')}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>")

