"""pipeline.resummarize on a results folder made here from the embedded sample: rewritten from the stored
predictions, refusing predictions or data that are not the run's."""

import csv
import json

import numpy as np
import pytest

from common.errors import PipelineError
from components import configs, report
from components.evaluate import component as evaluate
from components.train import outputs as train_outputs
from pipeline import local_runner, resummarize
from pipeline.pipeline import create_pipeline

PARAMS = {"threshold": 0.5, "bootstrap_resamples": 30, "seed": 0, "tta_views": 0}
OLD_PAGE = ("<h1>x</h1>\n<h2>Results on observed labels</h2>\nold metrics\n<h2>Beyond the study (observed labels only)"
            "</h2>\nold beyond\n<h2>Figures</h2>\nold figures\n<h2>Data</h2>\nthe run's own data section</body>")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    output = tmp_path_factory.mktemp("runs")
    config = configs.PipelineConfig(output_dir=output)
    return output, local_runner.run_pipeline(create_pipeline(config), "ingest", log=lambda _: None)


def _results_folder(path, artifacts, first_summary=False, repeats=1):
    """One `original` run as pipeline.study leaves it: fold predictions of the sample's labelled images (of
    every repeat, each with its own folds), train_summary.json, evaluation.json, report.html, and the
    provenance naming the sample."""
    rows = [r for r in evaluate.examples_by_source_id(artifacts["ingest"]).values() if r["mortality_observed"] != "-1"]
    patients = sorted({r["patientid"] for r in rows})
    rng = np.random.default_rng(0)
    run_dir = path / "original_resnet18_patient"
    for repeat in range(repeats):
        for fold in range(3):
            folder = train_outputs.fold_dir(train_outputs.repeat_dir(run_dir, repeat), fold)
            folder.mkdir(parents=True)
            with open(folder / train_outputs.PREDICTIONS_CSV, "w", newline="") as handle:
                table = csv.writer(handle)
                table.writerow(train_outputs.PREDICTION_COLUMNS)
                for r in rows:
                    if (patients.index(r["patientid"]) + repeat) % 3 == fold:
                        table.writerow([r["source_id"], r["patientid"], r["mortality_observed"], "observed",
                                        rng.random()])
    summary = {"variant": "original", "split": "patient", "weights": None,
               "params": {"repeats": repeats}, "split_seeds": list(range(repeats))}
    (run_dir / train_outputs.SUMMARY).write_text(json.dumps(summary))
    predictions = evaluate.with_row_facts(train_outputs.read_predictions(run_dir),
                                          evaluate.examples_by_source_id(artifacts["ingest"]))
    record = evaluate.evaluation_record(predictions, "original", "patient", None, PARAMS)
    evaluate.add_repeated_cv(record, run_dir, summary, predictions, PARAMS, run_dir)
    if first_summary:  # the first summary's headline: fold means of the scores, summed-confusion rates
        record["metrics"] = {name: {"mean": value["fold_mean" if name in evaluate.evaluate_metrics.SCORES
                                               else "estimate"]} for name, value in record["metrics"].items()}
    (run_dir / evaluate.EVALUATION_NAME).write_text(json.dumps(record))
    (run_dir / report.REPORT_NAME).write_text(OLD_PAGE)
    (path / "provenance_table1_patient.json").write_text(json.dumps({
        "data_dir": str(configs.SAMPLE_DATA_DIR.relative_to(configs.REPO_ROOT)), "seed": 0,
        "data": {"fingerprint": artifacts["data"].fingerprint},
        "runs": [{"variant": "original", "arch": "resnet18", "split": "patient"}]}))
    return run_dir


@pytest.mark.parametrize("first_summary", [True, False], ids=["first summary", "re-summarised"])
def test_a_results_folder_is_rewritten_from_its_predictions(ingested, tmp_path, first_summary):
    output, artifacts = ingested
    run_dir = _results_folder(tmp_path, artifacts, first_summary)
    [stem] = resummarize.resummarize_folder(tmp_path, output)
    assert stem == tmp_path / "table1_patient" and stem.with_suffix(".md").is_file()
    record = json.loads((run_dir / evaluate.EVALUATION_NAME).read_text())
    assert "estimate" in record["metrics"]["roc_auc"] and evaluate.AGE_SEX in record["sets"]
    assert record["sets"][evaluate.OBSERVED]["bootstrap"]["resamples"] == PARAMS["bootstrap_resamples"]
    assert all((run_dir / name).is_file() for name in (evaluate.DECISION_CURVE_NAME, evaluate.DECISION_CURVE_FIGURE))
    page = (run_dir / report.REPORT_NAME).read_text()
    assert "old metrics" not in page and "Fold mean ± sd" in page and "Decision curves" in page
    assert page.endswith("<h2>Data</h2>\nthe run's own data section</body>")
    table = (tmp_path / "table1_patient.md").read_text()
    balanced_accuracy = record["metrics"]["balanced_accuracy"]["estimate"]
    assert f"| original | resnet18 | ours (patient split) | {balanced_accuracy:.3f} (" in table


def test_other_predictions_or_another_snapshot_are_refused(ingested, tmp_path):
    output, artifacts = ingested
    run_dir = _results_folder(tmp_path, artifacts)
    predictions = run_dir / "fold_1" / train_outputs.PREDICTIONS_CSV
    lines = predictions.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",0.999"
    predictions.write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match=r"original_resnet18_patient: \w+ \(\w+\) was .* not the same predictions"):
        resummarize.resummarize_folder(tmp_path, output)
    provenance = tmp_path / "provenance_table1_patient.json"
    provenance.write_text(provenance.read_text().replace(artifacts["data"].fingerprint, "0" * 64))
    with pytest.raises(PipelineError, match="is not the 000000000000 the results were made from"):
        resummarize.resummarize_folder(tmp_path, output)


def test_repeated_cross_validation_is_rewritten_too_and_checked(ingested, tmp_path):
    output, artifacts = ingested
    run_dir = _results_folder(tmp_path, artifacts, repeats=2)
    stored = json.loads((run_dir / evaluate.EVALUATION_NAME).read_text())["repeated_cv"]
    resummarize.resummarize_folder(tmp_path, output)
    repeated = json.loads((run_dir / evaluate.EVALUATION_NAME).read_text())["repeated_cv"]
    assert repeated["metrics"]["roc_auc"]["mean"] == stored["metrics"]["roc_auc"]["mean"]
    assert set(repeated["baselines"]) == {"age_sex", "image_age_sex"}
    assert (tmp_path / "repeated_table1_patient.md").is_file()
    assert "ROC AUC, age + sex alone" in (run_dir / report.REPORT_NAME).read_text()
    predictions = train_outputs.fold_dir(train_outputs.repeat_dir(run_dir, 1), 2) / train_outputs.PREDICTIONS_CSV
    lines = predictions.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",0.999"  # repeat 0, the single split, is untouched
    predictions.write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match=r"\w+ \(mean over repeats\) was .* not the same predictions"):
        resummarize.resummarize_folder(tmp_path, output)


def test_the_command_takes_the_output_dir_flag(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pipeline.resummarize", f"--output_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=900, cwd=configs.REPO_ROOT)
    assert done.returncode == 2 and "usage: python -m pipeline.resummarize" in done.stderr
