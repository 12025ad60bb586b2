"""The report, rendered from real sample reports and a synthetic evaluation, read in headless Chromium."""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from components import impute, ingest, model_card, published, report
from components.evaluate import component as evaluate
from components import configs
from pipeline import local_runner
from pipeline.pipeline import create_pipeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _predictions(seed=0, folds=5, patients=40):
    rng = np.random.default_rng(seed)
    rows = {"fold": [], "source_id": [], "patient": [], "label": [], "label_source": [], "probability": []}
    for patient in range(patients):
        died = int(rng.random() < 0.3)
        for image in range(2):
            rows["fold"].append(patient % folds)
            rows["source_id"].append(f"p{patient}-{image}.jpg")
            rows["patient"].append(str(patient))
            rows["label"].append(died)
            rows["label_source"].append("observed" if patient % 4 else "imputed")
            rows["probability"].append(float(np.clip(0.3 + 0.4 * died + rng.normal(0, 0.2), 0, 1)))
    return {k: np.asarray(v) for k, v in rows.items()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    config = configs.PipelineConfig(output_dir=out / "runs")
    artifacts = local_runner.run_pipeline(create_pipeline(config), "impute", log=lambda _: None)
    predictions = _predictions()
    params = {"threshold": 0.5, "bootstrap_resamples": 200, "seed": 0}
    weights = "ImageNet, partial: conv1-layer3 + stage-4 shortcut; stage-4 3x3 convs random"
    record = evaluate.evaluation_record(predictions, "imputed_weights", "image", weights, params)
    histories = {k: [{"phase": "frozen" if e < 2 else "unfrozen", "global_epoch": e, "train_loss": 1 / (e + 1),
                      "val_loss": 0.8 / (e + 1) + 0.1} for e in range(6)] for k in range(5)}
    evaluate.summary_figures(out, record)
    evaluate.write_figures(out, record, predictions, histories, [])
    context = {
        "ingest_report": json.loads((artifacts["ingest"].path / ingest.REPORT_NAME).read_text()),
        "impute_report": json.loads((artifacts["impute"].path / impute.REPORT_NAME).read_text()),
        "evaluation": record, "published": report.published_rows("imputed_weights"),
        "provenance": {"command": "python -m pipeline.run --variant imputed_weights", "seed": 0, "git commit": "abc"},
    }
    path = out / "report.html"
    path.write_text(report.render(context, out))
    return path, record, context


def test_the_analyses_beyond_the_study_are_shown_apart(rendered, tmp_path):
    _, _, context = rendered
    predictions = _predictions()
    predictions["offset_days"] = np.tile([3.0, 12.0], len(predictions["label"]) // 2)  # each patient's 1st image early
    predictions["age"] = np.repeat(np.linspace(30, 90, len(predictions["label"]) // 2), 2)
    predictions["sex"] = np.tile([1.0, 1.0, 0.0, 0.0], len(predictions["label"]) // 4)
    tta = {**predictions, "probability": np.clip(predictions["probability"] + 0.05, 0, 1)}
    params = {"threshold": 0.5, "bootstrap_resamples": 50, "seed": 0, "tta_views": 4}
    record = evaluate.evaluation_record(predictions, "original_weights", "patient", None, params, tta)
    text = report.render({**context, "evaluation": record}, tmp_path)
    section = text.split("<h2>Beyond the study (observed labels only)</h2>")[1].split("<h2>")[0]
    assert "how well are patients, not images, ranked" in section and "Images, TTA (4 views)" in section
    patient_auc = record["sets"][evaluate.PATIENT_LEVEL]["pooled"]["roc_auc"]
    assert f"{patient_auc:.3f}" in section
    calibration = record["sets"][evaluate.OBSERVED]["calibration"]
    assert f"{calibration['ece']:.3f}" in section
    recalibrated = record["sets"][evaluate.RECALIBRATED]["calibration"]
    assert "Recalibrated, cross-fitted" in section and f"slope {recalibrated['slope']:.2f}" in section
    assert f"calibration slope {calibration['slope']:.2f} [{calibration['intervals']['slope']['low']:.2f}" in section
    gain = record["admission_comparison"]["image_minus_age_sex"]
    assert "Does the X-ray add anything over age and sex?" in section and f"{gain['difference']:+.3f}" in section
    at_20 = next(r for r in record["decision_curves"][evaluate.OBSERVED]["rows"] if r["threshold"] == 0.2)
    assert f"<tr><td>20%</td><td>{at_20['treat_all']:.3f}</td><td>0.000</td><td>{at_20['model']:.3f}</td>" in section
    early = record["sets"][evaluate.EARLY_IMAGES]
    assert "Images of the first 7 days" in section and f"First-week images</b> ({early['n']} images" in section
    assert early["n"] == np.sum(predictions["label_source"] == "observed") // 2


def test_report_holds_metrics_beside_the_study_and_the_notices(rendered):
    path, record, _ = rendered
    text = path.read_text()
    assert "not a medical device" in text
    assert "ImageNet, partial" in text and "Not the study" in text
    auc = record["metrics"]["roc_auc"]
    assert (f"<td>ROC AUC</td><td>{auc['estimate']:.3f}</td><td>{auc['ci_low']:.3f} – {auc['ci_high']:.3f}</td>"
            f"<td>{auc['fold_mean']:.3f} ± {auc['fold_std']:.3f}</td><td>0.830</td>") in text
    assert "The study's way" in text  # imputed labels in validation, named apart
    assert "python -m pipeline.run --variant imputed_weights" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 6  # + calibration, decision curves
    assert "Age and sex</b>: not computed" in text  # no admission facts given
    assert "Patient level</b>: not computed" in text and "Test-time augmentation</b>: off" in text
    assert "First-week images" not in text  # no offsets, no set


def test_a_manifest_report_names_the_hospitals_data_and_survives_a_refused_imputation(rendered, tmp_path):
    _, _, context = rendered
    counts = {**context["ingest_report"]["counts"], "schema": "manifest", "sites": ["north"],
              "view_assumed_frontal": 2, "dicom_screened": {"dicom_lateral_view": 1}, "age_from_dicom_header": 3,
              "sex_from_dicom_header": 0, "burned_in_annotation": 1, "burned_in_annotation_images": ["img-01.dcm"]}
    rows = [{"source_id": f"{i}.dcm", "patientid": "pt-1", "mortality_observed": str(i % 2)} for i in range(4)]
    refused = impute.without_imputation(rows, ingest.CLINICAL_COLUMNS)["report"]
    manifest_report = {**context["ingest_report"], "counts": counts, "summary": ingest.summary_line(counts)}
    text = report.render({**context, "ingest_report": manifest_report,
                          "impute_report": refused, "published": None}, tmp_path)
    data = text.split("<h2>Data</h2>")[1].split("<h2>")[0]
    assert "Rows in manifest.csv" in data and "metadata.csv" not in data and "COVID-19 X-rays" not in data
    for shown in ("Sites: north.", "assumed frontal (none in the manifest nor in the DICOM header): 2",
                  "dicom_lateral_view 1", "Age from DICOM header: 3", "Burned-in annotation", "img-01.dcm"):
        assert shown in data
    assert "3 age from DICOM header" in data and "1 with burned-in annotation" in data  # the summary line
    assert "Imputation not possible: the data has no column(s) went_icu" in text
    assert "Study (test)" not in text and "Study:" not in text and "0.925" not in text
    assert html.escape(model_card.HOSPITAL_NOTICE) in text and "public collection" not in text


def test_a_resummarised_report_keeps_the_runs_own_sections(rendered, tmp_path):
    path, record, context = rendered
    page = path.read_text()
    other = {**record, "metrics": {name: {**value, "estimate": 0.123456} for name, value in record["metrics"].items()}}
    sections = report.summary_sections(other, context["published"], path.parent)
    again = report.replace_sections(page, sections)
    assert "<td>ROC AUC</td><td>0.123</td>" in again and "<td>ROC AUC</td><td>0.123</td>" not in page
    after = lambda text: text[text.index("<h2>Data</h2>"):]  # noqa: E731
    assert after(again) == after(page)  # data, imputation and provenance untouched
    assert again.count("<h2>") == page.count("<h2>")
    with pytest.raises(ValueError, match="no section 'Nowhere'"):
        report.replace_sections(page, {"Nowhere": ""})


def test_published_rows_match_the_variant():
    rows = report.published_rows("original_resample")
    assert rows["test"]["roc_auc"] == "0.91" and rows["train"]["roc_auc"] == "0.96"


def test_published_rows_read_table_2_by_architecture_and_leave_unpublished_ones_empty():
    rows = published.published_rows("original", "convnext", "2")
    assert list(rows) == ["test"] and rows["test"]["roc_auc"] == "0.50"
    assert published.published_rows("original", "resnet18", "2")["test"]["roc_auc"] == "0.92"  # not Table 1's
    assert published.published_rows("original", "convnext") == {}  # Table 1 has ResNet-18 only
    assert report.published_rows is published.published_rows  # one reader for the report and the study


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (CI installs it)")
def test_report_renders_in_headless_chromium(rendered, tmp_path):
    path, _, _ = rendered
    assert CHROMIUM, "CI must install chromium (.ci/run does)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,2400", path.as_uri()],
                   check=True, capture_output=True, timeout=900)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1200)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
    assert (pixels < 100).mean() > 0.01  # dark ink present
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", path.as_uri()], check=True, capture_output=True,
                         text=True, timeout=900).stdout
    assert dom.count("<table>") >= 4 and "ROC AUC" in dom


def test_the_model_card_is_a_section_of_the_report(rendered, tmp_path):
    _, record, context = rendered
    predictions = _predictions()
    export_record = {"threshold": 0.5, "ensemble": "mean of member probabilities", "members": [{}] * 5,
                     "image_size": 224, "bless_thresholds": {"roc_auc": 0.7}}
    card = model_card.build(model_name="covid_cxr_mortality_demo", status="DEMO — not blessed for use: roc_auc 0.6 < 0.7",
                            blessed=False, export_record=export_record, predictions=predictions, evaluation=record,
                            train_summary={"split": "image", "weights": record["weights"]}, data=None)
    text = report.render({**context, "model_card": card}, tmp_path)
    section = text.split("<h2>Model card</h2>")[1].split("<h2>")[0]
    assert '<div class="warn">DEMO — not blessed for use: roc_auc 0.6 &lt; 0.7</div>' in section
    for title, _ in model_card.sections(card):
        assert f"<h3>{title}</h3>" in section
    auc = record["metrics"]["roc_auc"]
    assert f"{auc['estimate']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]" in section
    assert "<li>Patient leakage: the folds were split by image" in section
    assert "<h2>Model card</h2>" not in report.render(context, tmp_path)  # no export, no card


def test_repeated_cross_validation_is_shown_beside_the_single_split():
    run = configs.REPO_ROOT / "results" / "linear_probe_patient" / "original_weights_resnet18+linear_probe_patient"
    evaluation = json.loads((run / "evaluation.json").read_text())
    text = report.metrics_section(evaluation, {})
    section = text.split("<b>Repeated cross-validation</b>")[1]
    roc_auc = evaluation["repeated_cv"]["metrics"]["roc_auc"]
    assert "5 repeats" in section
    assert f"<td>ROC AUC</td><td>{roc_auc['mean']:.3f}</td>" in section
    assert f"{roc_auc['min']:.3f} – {roc_auc['max']:.3f}" in section
    slope = evaluation["repeated_cv"]["metrics"]["calibration_slope"]
    assert f"<td>Calibration slope</td><td>{slope['mean']:.3f}</td>" in section
    age_sex = evaluation["repeated_cv"]["baselines"]["age_sex"]["metrics"]["roc_auc"]
    assert f"<td>ROC AUC, age + sex alone</td><td>{age_sex['mean']:.3f}</td>" in section
    gain = evaluation["repeated_cv"]["image_minus_age_sex"]
    assert f"paired difference: {gain['difference']:+.3f} ({gain['low']:+.3f} to {gain['high']:+.3f})" in section
    del evaluation["repeated_cv"]
    assert "Repeated cross-validation" not in report.metrics_section(evaluation, {})


def test_the_per_site_table_names_each_held_out_site_and_those_without_a_row():
    evaluation = {"site_of_fold": ["Italy", "Spain"],
                  "per_site": [{"site": "Italy", "fold": 0, "images": 9, "deaths": 3, "roc_auc": 0.7,
                                "balanced_accuracy": 0.6, "recall": 0.5, "tnr": 0.7, "brier": 0.2}]}
    text = report.sites_section(evaluation)
    assert "<td>Italy</td><td>9</td><td>3</td><td>0.700</td>" in text
    assert "one outcome only, so no row: Spain" in text
