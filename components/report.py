"""Report: one self-contained `report.html` a clinician can read at a glance.

It gathers what the other stages recorded: data counts, the imputation's
quality, the weights used, the metrics (pooled out-of-fold estimate, its
bootstrap interval, the fold mean +- sd) beside the study's published numbers
(for the upstream collection; a hospital's manifest is described in its own words),
the figures (embedded), what goes beyond the study (patient-level ranking,
calibration, decision curves, age and sex with and without the X-ray,
test-time augmentation), the exact
command line, seed, git commit and timings, and the notice that this is
research software, not a medical device.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from components import base, export, impute, ingest, model_card
from components.evaluate import outputs as evaluate_outputs
from components.evaluate.outputs import CALIBRATION_BINS, DECISION_THRESHOLDS, METRICS, SCORES
from components.published import published_rows

REPORT_NAME = "report.html"
STUDY_CITATION = ("Olowolayemo et al., Covid-19 Mortality Risk Prediction Using Small Dataset of Chest X-Ray Images, "
                  "Artificial Intelligence and Applications, DOI 10.47852/bonviewAIA3202819")
NOTICE = model_card.RESEARCH_ONLY_NOTICE
STUDY_NOTE = (f'<p class="muted">Study: {html.escape(STUDY_CITATION)}; its numbers come from a later snapshot of '
              "the data (169 labelled images) and split by image, so patients can sit on both sides.</p>")
FIGURES = (  # file, caption, shown full width
    ("roc.png", "ROC curves: each fold faint, their mean bold", False),
    ("pr.png", "Precision-recall curves: each fold faint, their mean bold", False),
    ("confusion.png", "Confusion matrix of the pooled out-of-fold predictions (the folds' summed)", False),
    ("lr_finder.png", "Learning-rate finder sweeps", False),
    ("loss.png", "Training and validation loss per fold (grey: body frozen)", True),
    ("gradcam.png", "Grad-CAM: where the model looked (validation images of each class)", True),
)
NAMES = {"balanced_accuracy": "Balanced accuracy", "roc_auc": "ROC AUC", "precision": "Precision",
         "recall": "Recall (sensitivity)", "f1": "F1", "pr_auc": "PR AUC", "brier": "Brier score",
         "tpr": "TPR", "tnr": "TNR (specificity)", "fpr": "FPR", "fnr": "FNR"}
BEYOND_METRICS = ("roc_auc", "pr_auc", "balanced_accuracy", "recall", "brier")
RESULTS_TITLE = "Results on observed labels"
BEYOND_TITLE = "Beyond the study (observed labels only)"
FIGURES_TITLE = "Figures"
DECISION_ROWS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)  # the thresholds the report's table shows

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;
color:#1d2530;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;border-bottom:2px solid #dde3ea;padding-bottom:4px}
.notice{background:#fff4e5;border-left:5px solid #f0a020;padding:10px 14px;margin:14px 0;font-weight:600}
.warn{background:#fdecec;border-left:5px solid #d33;padding:8px 14px;margin:10px 0}
table{border-collapse:collapse;margin:8px 0;font-size:.95em}td,th{border:1px solid #cfd6de;padding:4px 10px;text-align:right}
th{background:#eef2f6}td:first-child,th:first-child{text-align:left}.muted{color:#667}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}figure img{max-width:520px;border:1px solid #dde3ea}
figure.wide{display:block}figure.wide img{max-width:100%}
figcaption{font-size:.85em;color:#445}code{background:#f2f4f7;padding:1px 4px;border-radius:3px}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: Path, caption: str, wide: bool) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure{" class=wide" if wide else ""}><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _interval(interval: Mapping[str, float], digits: int = 3) -> str:
    return f"{_fmt(interval['low'], digits)} – {_fmt(interval['high'], digits)}"


def metrics_section(evaluation: Mapping[str, Any], published: Mapping[str, Mapping[str, str]] | None) -> str:
    """The headline metrics; beside the study's published numbers when `published` is given (the upstream
    collection only: a hospital's own data is not the study's)."""
    metrics = evaluation["metrics"]
    study = [] if published is None else [published.get("test", {})]
    rows = [[NAMES[name], _fmt(metrics[name]["estimate"]), _interval({"low": metrics[name]["ci_low"],
                                                                       "high": metrics[name]["ci_high"]}),
             f'{_fmt(metrics[name]["fold_mean"])} ± {_fmt(metrics[name]["fold_std"])}',
             *(_fmt(test.get(name), 3) for test in study)]
            for name in METRICS]
    unit = evaluation["sets"][evaluate_outputs.OBSERVED]["bootstrap"]["unit"]
    text = _table(["Metric (positive = died)", "Ours, pooled out-of-fold", f"95% CI (bootstrap over {unit}s)",
                   "Fold mean ± sd", *(["Study (test)"] if study else [])], rows)
    text += ("<p class=muted>Each estimate is computed once on every validation row pooled; its interval "
             "resamples the same pooled rows, so it brackets the same statistic. The fold mean ± sd shows how "
             "much the folds disagree (the study reported fold means).</p>")
    if "site_of_fold" in evaluation:
        text += sites_section(evaluation)
    if "repeated_cv" in evaluation:
        text += repeats_section(evaluation["repeated_cv"])
    if evaluate_outputs.STUDY_WAY in evaluation["sets"]:
        study_way = evaluation["sets"][evaluate_outputs.STUDY_WAY]["pooled"]
        text += "<p>The study's way, counting imputed labels in validation (not comparable to a clinical truth): "
        text += ", ".join(f"{NAMES[n]} {_fmt(study_way[n])}" for n in SCORES[:5]) + " (pooled).</p>"
    return text


SITE_METRICS = ("roc_auc", "balanced_accuracy", "recall", "tnr", "brier")


def sites_section(evaluation: Mapping[str, Any]) -> str:
    """Under --split=site: each fold is a site the model never saw; the per-fold metrics, one row per site whose
    validation images hold both outcomes."""
    shown = {row["site"] for row in evaluation["per_site"]}
    without = [site for site in evaluation["site_of_fold"] if site not in shown]
    rows = [[html.escape(row["site"]), row["images"], row["deaths"], *(_fmt(row[name]) for name in SITE_METRICS)]
            for row in evaluation["per_site"]]
    return ("<p><b>Internal-external validation</b>: each fold held out one site (sites with too few patients "
            "pooled as one), so the pooled estimate above is of hospitals the model never saw. Per held-out site:</p>"
            + _table(["Held-out site", "Images", "Deaths", *(NAMES[name] for name in SITE_METRICS)], rows)
            + (f"<p class=muted>Validated, but one outcome only, so no row: {html.escape(', '.join(without))}.</p>"
               if without else ""))


REPEATED_BASELINES = {evaluate_outputs.REPEATED_AGE_SEX: "age + sex alone",
                      evaluate_outputs.REPEATED_IMAGE_AGE_SEX: "image + age + sex"}


def repeats_section(repeated: Mapping[str, Any]) -> str:
    """With `--repeats`: each metric's pooled estimate averaged over the repeats, its interval and spread, and
    the admission baselines refitted on every repeat's folds."""
    def row(title, m):
        return [title, _fmt(m["mean"]), _interval({"low": m["ci_low"], "high": m["ci_high"]}), _fmt(m["sd"]),
                f'{_fmt(m["min"])} – {_fmt(m["max"])}']

    names = {**NAMES, "calibration_slope": "Calibration slope"}
    rows = [row(names[name], m) for name, m in repeated["metrics"].items() if name in names]
    for key, title in REPEATED_BASELINES.items():
        if key in repeated.get("baselines", {}):
            rows += [row(f"{NAMES[name]}, {title}", repeated["baselines"][key]["metrics"][name])
                     for name in ("roc_auc", "pr_auc", "brier")]
    return (f"<p><b>Repeated cross-validation</b> ({repeated['repeats']} repeats of the folds, split seeds "
            f"{', '.join(map(str, repeated['split_seeds']))}; the table above is the first, the single split): the pooled out-of-fold "
            f"estimate of every repeat, averaged, with a {int(100 * repeated['level'])}% bootstrap interval drawing "
            f"the same {repeated['unit']}s for every repeat and row; age and sex are refitted on each repeat's "
            f"folds.</p>"
            + _table(["Metric", f"Mean over {repeated['repeats']} repeats", "95% CI", "sd over repeats",
                      "min – max"], rows) + _gain_over_age_sex(repeated))


def _gain_over_age_sex(repeated: Mapping[str, Any]) -> str:
    gain = repeated.get("image_minus_age_sex")
    if not gain:
        return ""
    return (f"<p>Does the X-ray add anything over age and sex? ROC AUC of the image model minus age and sex "
            f"alone, mean over the repeats of the paired difference: {gain['difference']:+.3f} "
            f"({gain['low']:+.3f} to {gain['high']:+.3f}).</p>")


def _estimate_and_interval(summary: Mapping[str, Any], name: str) -> str:
    interval = summary["bootstrap"]["intervals"][name]
    return f"{_fmt(summary['pooled'][name])} [{_fmt(interval['low'])}, {_fmt(interval['high'])}]"


def _difference(effect: Mapping[str, float]) -> str:
    return f"{effect['difference']:+.3f} ({effect['low']:+.3f} to {effect['high']:+.3f})"


def admission_section(evaluation: Mapping[str, Any]) -> str:
    """Age and sex alone, the image model, and both, on the same rows and folds."""
    comparison, sets = evaluation.get("admission_comparison"), evaluation["sets"]
    if not comparison:
        return "<p><b>Age and sex</b>: not computed (the evaluation had no admission facts).</p>"
    shown = (evaluate_outputs.AGE_SEX, evaluate_outputs.OBSERVED, evaluate_outputs.IMAGE_AGE_SEX)
    rows = [[NAMES[metric], *(_estimate_and_interval(sets[name], metric) for name in shown)]
            for metric in ("roc_auc", "pr_auc", "brier")]
    text = (f"<p><b>Does the X-ray add anything over age and sex?</b> ROC AUC of the image model minus age and "
             f"sex alone: {_difference(comparison['image_minus_age_sex'])}; image + age + sex minus age and sex: "
             f"{_difference(comparison['image_plus_age_sex_minus_age_sex'])} (paired bootstrap, the same resamples "
             f"for both). Age is known for {comparison['rows_with_age']} and sex for {comparison['rows_with_sex']} "
             f"of the {comparison['rows']} images. Both baselines are L2 logistic regressions fitted fold by fold "
             "on the other folds' observed rows (missing values: the training folds' median plus a missing "
             "indicator); the combination is fitted on the other folds' out-of-fold image log-odds, so no row's "
             "own image prediction is fitted on itself.</p>")
    return text + _table(["Pooled out-of-fold [95% CI]", *(evaluate_outputs.MODEL_NAMES[name] for name in shown)], rows)


def decision_section(evaluation: Mapping[str, Any], figures_dir: Path) -> str:
    """Net benefit at a few threshold probabilities, and the figure over 5-50%."""
    curves = evaluation["decision_curves"]
    names = list(curves)
    by_threshold = [{row["threshold"]: row for row in curves[name]["rows"]} for name in names]
    first = by_threshold[0]
    rows = [[f"{t:.0%}", _fmt(first[t]["treat_all"]), _fmt(0.0), *(_fmt(curve[t]["model"]) for curve in by_threshold)]
            for t in DECISION_ROWS if t in first]
    beats = curves[evaluate_outputs.OBSERVED]["thresholds_where_model_beats_both"]
    text = (f"<p><b>Decision curves</b>: net benefit = TP/n − FP/n · t/(1 − t) of treating every case with "
            f"p ≥ t, at threshold probabilities t from {DECISION_THRESHOLDS[0]:.0%} to {DECISION_THRESHOLDS[-1]:.0%} "
            "(Vickers & Elkin 2006), against treating all and treating none. The image model beats both at "
            + (f"{len(beats)} of the {len(DECISION_THRESHOLDS)} thresholds (lowest {beats[0]:.0%}, highest "
               f"{beats[-1]:.0%})."
               if beats else "none of the thresholds.") + "</p>")
    text += _table(["Threshold", "Treat all", "Treat none", *(evaluate_outputs.MODEL_NAMES[name] for name in names)], rows)
    figure = figures_dir / evaluate_outputs.DECISION_CURVE_FIGURE
    if figure.is_file():
        text += _image(figure, "Decision curves: net benefit against threshold probability", False)
    return text


def beyond_study_section(evaluation: Mapping[str, Any], figures_dir: Path) -> str:
    """Patient-level ranking, first-week images, test-time augmentation, calibration, decision curves and the
    age/sex baseline, each on observed labels only."""
    sets = evaluation["sets"]
    columns = {evaluate_outputs.OBSERVED: "Images (headline)", evaluate_outputs.PATIENT_LEVEL: "Patients (mean over images)",
               evaluate_outputs.EARLY_IMAGES: f"Images of the first {evaluate_outputs.EARLY_OFFSET_DAYS} days",
               evaluate_outputs.RECALIBRATED: "Images, recalibrated (cross-fitted)"}
    if evaluate_outputs.OBSERVED_TTA in sets:
        columns[evaluate_outputs.OBSERVED_TTA] = f"Images, TTA ({sets[evaluate_outputs.OBSERVED_TTA]['tta_views']} views)"
    shown = [name for name in columns if name in sets]
    rows = [[NAMES[metric], *(_estimate_and_interval(sets[name], metric) for name in shown)]
            for metric in BEYOND_METRICS]
    text = _table(["Pooled out-of-fold [95% CI], observed labels", *(columns[name] for name in shown)], rows)
    if evaluate_outputs.PATIENT_LEVEL in sets:
        text += (f"<p><b>Patient level</b> ({sets[evaluate_outputs.PATIENT_LEVEL]['n']} patients): each patient's "
                 "probability is the mean of their images' probabilities. This answers \"how well are patients, "
                 "not images, ranked\": a patient with many X-rays no longer counts many times.</p>")
    else:
        text += ("<p><b>Patient level</b>: not computed; it needs <code>--split=patient</code> or "
                 "<code>--split=site</code>, under which every patient's images sit in one fold.</p>")
    if evaluate_outputs.EARLY_IMAGES in sets:
        early = sets[evaluate_outputs.EARLY_IMAGES]
        text += (f"<p><b>First-week images</b> ({early['n']} images, {early['positives']} of them of patients who died): "
                 f"images taken at most {evaluate_outputs.EARLY_OFFSET_DAYS} days after symptom onset or admission (the "
                 "data's <code>offset</code> or <code>offset_days</code>; negative offsets, before it, included; images without one left "
                 "out), the X-rays a triage decision would have. Scored by the same models, trained on all "
                 "images.</p>")
    if evaluate_outputs.OBSERVED_TTA in sets:
        text += (f"<p><b>Test-time augmentation</b>: each validation image scored by its fold's model on the plain "
                 f"image and {sets[evaluate_outputs.OBSERVED_TTA]['tta_views'] - 1} views with the training augmentation, "
                 "probabilities averaged.</p>")
    else:
        text += "<p><b>Test-time augmentation</b>: off (<code>--tta_views</code>).</p>"
    calibration = sets[evaluate_outputs.OBSERVED]["calibration"]
    intervals = calibration["intervals"]
    text += (f"<p><b>Calibration</b> of the image-level probabilities: expected calibration error "
             f"{_fmt(calibration['ece'])} [{_interval(intervals['ece'])}] ({CALIBRATION_BINS} equal-width bins), "
             f"calibration slope {_fmt(calibration['slope'], 2)} [{_interval(intervals['slope'], 2)}] (1 = ideal; "
             f"below 1, risks too extreme), intercept {_fmt(calibration['intercept'], 2)} "
             f"[{_interval(intervals['intercept'], 2)}] (0 = ideal; negative, risks overestimated), Brier score "
             f"{_fmt(calibration['brier'])}, base rate {_fmt(calibration['base_rate'])}.</p>")
    if evaluate_outputs.RECALIBRATED in sets:
        text += recalibrated_paragraph(sets[evaluate_outputs.RECALIBRATED]["calibration"])
    figure = figures_dir / evaluate_outputs.CALIBRATION_FIGURE
    if figure.is_file():
        text += _image(figure, "Reliability diagram: observed died fraction against mean predicted probability, "
                               "bin counts beside the points", False)
    return text + decision_section(evaluation, figures_dir) + admission_section(evaluation)


def recalibrated_paragraph(calibration: Mapping[str, Any]) -> str:
    """The cross-fitted estimate of export's recalibration: what the served probabilities are likely to do."""
    intervals = calibration["intervals"]
    return (f"<p><b>Recalibrated, cross-fitted</b>: export serves sigmoid(a + b · logit(p)) with a, b fitted on all the "
            "out-of-fold predictions (when the fit works and its slope is positive; the model card says whether it "
            "did). Estimated honestly here, each fold recalibrated by a fit on the other folds only: calibration "
            f"slope {_fmt(calibration['slope'], 2)} [{_interval(intervals['slope'], 2)}], intercept "
            f"{_fmt(calibration['intercept'], 2)} [{_interval(intervals['intercept'], 2)}], expected calibration error "
            f"{_fmt(calibration['ece'])} [{_interval(intervals['ece'])}], Brier score {_fmt(calibration['brier'])}. "
            "The ranking within a fold is unchanged, so the pooled ROC AUC moves only as the folds' scales are "
            "aligned.</p>")


def figures_section(figures_dir: Path) -> str:
    return "".join(_image(figures_dir / name, caption, wide) for name, caption, wide in FIGURES
                   if (figures_dir / name).is_file())


def summary_sections(evaluation: Mapping[str, Any], published: Mapping[str, Mapping[str, str]] | None,
                     figures_dir: Path) -> dict[str, str]:
    """{section title: body} of the sections drawn from the evaluation alone; `published` None leaves the
    study's numbers out (a hospital's own data)."""
    return {RESULTS_TITLE: metrics_section(evaluation, published) + (STUDY_NOTE if published is not None else ""),
            BEYOND_TITLE: beyond_study_section(evaluation, figures_dir), FIGURES_TITLE: figures_section(figures_dir)}


def replace_sections(page: str, sections: Mapping[str, str]) -> str:
    """`page` with the body of each titled section (from its `<h2>` to the next `<h2>`) replaced: a report
    re-summarised from stored predictions keeps what the run itself recorded (data, imputation, provenance)."""
    for title, body in sections.items():
        heading = f"<h2>{html.escape(title)}</h2>"
        match = re.search(re.escape(heading) + r"\n(.*?)(?=\n<h2>)", page, flags=re.S)
        if match is None:
            raise ValueError(f"report: no section {title!r} followed by another section")
        page = page[:match.start(1)] + body + page[match.end(1):]
    return page


def model_card_section(card: Mapping[str, Any]) -> str:
    """The exported model's card (`components/model_card.py`), laid out as in its model_card.md."""
    text = "" if card["model"]["blessed"] else f'<div class="warn">{html.escape(card["model"]["status"])}</div>'
    for title, rows in model_card.sections(card):
        text += f"<h3>{html.escape(title)}</h3>"
        if rows and isinstance(rows[0], tuple):
            text += _table(["", ""], [[html.escape(label), html.escape(value)] for label, value in rows])
        else:
            text += "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in rows) + "</ul>"
    return text


def upstream_data_table(counts: Mapping[str, Any]) -> str:
    return _table(["Step", "Images", "Patients"], [
        ["Rows in metadata.csv", counts["rows"], ""],
        ["COVID-19 X-rays", counts["covid_xray"], ""],
        ["Frontal views", counts["frontal"], counts["frontal_patients"]],
        ["… with a survival label", f"{counts['labelled']['count']} ({counts['labelled']['died']} died)",
         counts["labelled"]["patients"]],
        ["Usable images", counts["usable"], counts["usable_patients"]],
    ])


def manifest_data_section(counts: Mapping[str, Any]) -> str:
    """A hospital's manifest: its steps, sites, views assumed, what the DICOM headers screened out, supplied
    and flagged (images named by their names in the outputs, never by a path)."""
    table = _table(["Step", "Images", "Patients"], [
        ["Rows in manifest.csv", counts["rows"], ""],
        ["Frontal views (or no view given)", counts["frontal"], counts["frontal_patients"]],
        ["… with a survival label", f"{counts['labelled']['count']} ({counts['labelled']['died']} died)",
         counts["labelled"]["patients"]],
        ["Usable images", counts["usable"], counts["usable_patients"]],
    ])
    screened = counts.get("dicom_screened", {})
    burned_in = counts.get("burned_in_annotation_images", [])
    facts = [
        f"Sites: {html.escape(', '.join(counts.get('sites', [])) or 'not given')}.",
        f"Views assumed frontal (none in the manifest nor in the DICOM header): {counts.get('view_assumed_frontal', 0)}.",
        "Left out by their DICOM header: " + (", ".join(f"{html.escape(reason)} {n}" for reason, n in screened.items())
                                               or "none") + ".",
        f"Age from DICOM header: {counts.get('age_from_dicom_header', 0)}; sex from DICOM header: "
        f"{counts.get('sex_from_dicom_header', 0)} (where the manifest left them blank).",
        f"Burned-in annotation (DICOM header BurnedInAnnotation YES): {len(burned_in)}"
        + (f" ({', '.join(html.escape(name) for name in burned_in)}); their pixels are not cleaned, so they train, "
           "but no figure shows them." if burned_in else "."),
    ]
    return table + "<ul>" + "".join(f"<li>{fact}</li>" for fact in facts) + "</ul>"


def imputation_section(impute_report: Mapping[str, Any], hospital_data: bool) -> list[str]:
    """The RandomForest's cross-validation, or why nothing was imputed (a manifest without the flags)."""
    if "cv_by_image" not in impute_report:
        return ["<h2>Label imputation</h2>",
                f"<p>Imputation {html.escape(impute_report['imputation'])} (the study's features; "
                "<code>went_icu</code>, <code>needed_supplemental_O2</code>, <code>intubation_present</code>, "
                f"<code>extubated</code>). {impute_report['labelled']} observed labels; "
                f"{impute_report['unlabelled']} images without one; nothing imputed.</p>"]
    cv, by_patient = impute_report["cv_by_image"], impute_report["cv_by_patient"] or {}
    return [
        "<h2>Label imputation (RandomForest, the study's features)</h2>",
        _table(["CV on observed labels", "Accuracy", "Balanced accuracy"], [
            ["by image (the study's way)", _fmt(cv["accuracy"]), _fmt(cv["balanced_accuracy"])],
            ["by patient", _fmt(by_patient.get("accuracy")), _fmt(by_patient.get("balanced_accuracy"))],
            ["always 'survived' (baseline)", _fmt(impute_report["majority_class_baseline"]["accuracy"]), "0.500"],
        ]),
        f"<p>{impute_report['labelled']} observed labels, {impute_report['imputed']} imputed "
        f"({impute_report['imputed_died']} imputed as died)."
        + ("" if hospital_data else " Study's reported accuracy: ~0.925.") + "</p>",
    ]


def render(context: Mapping[str, Any], figures_dir: Path) -> str:
    ingest_report, impute_report = context["ingest_report"], context["impute_report"]
    evaluation, provenance = context["evaluation"], context["provenance"]
    counts = ingest_report["counts"]
    hospital_data = counts.get("schema") == "manifest"
    weights = evaluation.get("weights") or "none (trained from random initialisation)"
    weights_headline = weights.splitlines()[0].removeprefix("weights: ")
    parts = [
        f"<h1>COVID-19 mortality from chest X-rays — variant <code>{html.escape(evaluation['variant'])}</code>, "
        f"{html.escape(evaluation['split'])} split</h1>",
        f'<div class="notice">{html.escape(model_card.HOSPITAL_NOTICE if hospital_data else NOTICE)}</div>',
    ]
    if "partial" in weights.lower():
        parts.append(f'<div class="warn">Weights: {html.escape(weights_headline)}. Not the study\'s full '
                     "ImageNet initialisation.</div>")
    elif "scratch" in weights.lower() or weights.startswith("none"):
        parts.append('<div class="warn">No pretrained weights: the model was trained from random initialisation, '
                     "unlike the study's ImageNet start.</div>")
    sections = summary_sections(evaluation, context["published"], figures_dir)
    parts += [
        f"<h2>{RESULTS_TITLE}</h2>",
        sections[RESULTS_TITLE],
        f"<h2>{html.escape(BEYOND_TITLE)}</h2>",
        sections[BEYOND_TITLE],
        f"<h2>{FIGURES_TITLE}</h2>",
        sections[FIGURES_TITLE],
        "<h2>Data</h2>",
        f"<p>{html.escape(ingest_report['summary'])}</p>",
        manifest_data_section(counts) if hospital_data else upstream_data_table(counts),
    ]
    if ingest_report["rejected"]:
        parts.append(_table(["Line", "File", "Rejected because"], [
            [r["line"], html.escape(r["filename"]), html.escape(f"{r['reason']}: {r['detail']}")]
            for r in ingest_report["rejected"]]))
    parts += [
        *imputation_section(impute_report, hospital_data),
        *(["<h2>Model card</h2>", model_card_section(context["model_card"])] if context.get("model_card") else []),
        "<h2>How this was made</h2>",
        _table(["", ""], [[html.escape(k), f"<code>{html.escape(str(v))}</code>"] for k, v in provenance.items()]),
    ]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Mortality risk report — "
            f"{html.escape(evaluation['variant'])}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>")


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path) -> Mapping[str, Any]:
    evaluation_dir = inputs["evaluate"].path
    evaluation = evaluate_outputs.read_evaluation(evaluation_dir)
    timings = {name: artifact.record.get("seconds") for name, artifact in inputs.items()}
    provenance = {**params["provenance"],
                  "stage seconds": ", ".join(f"{k} {v:.0f}" for k, v in timings.items() if v is not None),
                  "weights": evaluation.get("weights") or "none"}
    if "export" in inputs:
        decision = export.read_export(inputs["export"])
        provenance["export"] = (f"{decision['status']}: pushed version {decision['pushed_version']} to "
                                f"{decision['pushed_to']}" if decision["pushed_to"] else decision["status"])
    ingest_report = json.loads((inputs["ingest"].path / ingest.REPORT_NAME).read_text())
    hospital_data = ingest_report["counts"].get("schema") == "manifest"
    context = {
        "ingest_report": ingest_report,
        "impute_report": json.loads((inputs["impute"].path / impute.REPORT_NAME).read_text()),
        "evaluation": evaluation,
        "published": None if hospital_data else published_rows(evaluation["variant"]),
        "provenance": provenance,
        "model_card": model_card.read(inputs["export"].path / export.SAVED_MODEL_DIR) if "export" in inputs else None,
    }
    (out_dir / REPORT_NAME).write_text(render(context, evaluation_dir))
    return {"bytes": (out_dir / REPORT_NAME).stat().st_size}


def _summary(artifact: base.Artifact) -> str:
    return f"report: {artifact.path / REPORT_NAME}"


SPEC = base.ComponentSpec(name="report", run=run, summary=_summary)
