"""The study's tables (components/evaluate/study_tables.py), on made-up runs."""

import pytest

from common.errors import PipelineError
from components.evaluate import study_tables
from components.evaluate import outputs as evaluate_outputs
from tests.components.evaluate.study_runs import evaluation_set, repeated_run, run_record


def test_each_of_our_rows_is_followed_by_the_papers():
    rows = study_tables.table_rows([run_record("original"), run_record("imputed_resample", auc=0.6)], "1")
    assert [(r["source"], r["variant"]) for r in rows] == [
        ("ours", "original"), ("paper", "original"), ("ours", "imputed_resample"), ("paper", "imputed_resample")]
    assert rows[1]["roc_auc"] == 0.90 and rows[3]["fpr"] == 0.052  # copied as printed
    assert rows[0]["roc_auc_ci"] == "0.600-0.800" and rows[0]["roc_auc_folds"] == "0.720±0.050"
    text = study_tables.markdown(rows)
    assert "| original | resnet18 | ours (patient split) | 0.700 (0.600-0.800; folds 0.720±0.050)" in text
    assert text.startswith("Ours: pooled out-of-fold estimate")
    assert "| original | resnet18 | paper (image split) | 0.890 | 0.900" in text


def test_table_2_rows_carry_the_papers_numbers_for_that_architecture():
    rows = study_tables.table_rows([run_record("original", arch="convnext")], "2")
    assert rows[1]["arch"] == "convnext" and rows[1]["roc_auc"] == 0.50 and rows[1]["tnr"] == 0.0


def test_a_model_the_paper_did_not_run_has_no_paper_row():
    rows = study_tables.table_rows([run_record("original_weights", arch="resnet18+linear_probe")], "1")
    assert [row["source"] for row in rows] == ["ours"]


def test_beyond_table_shows_each_computed_set_and_leaves_the_others_empty():
    interval = {"low": 0.1, "high": 0.3}
    calibration = {"ece": 0.21, "slope": 0.4, "intercept": -0.5, "brier": 0.19, "base_rate": 0.2,
                   "intervals": {"ece": interval, "slope": {"low": 0.2, "high": 0.7},
                                 "intercept": {"low": -1, "high": 0}}}
    sets = {evaluate_outputs.OBSERVED: {**evaluation_set(0.7, 0.5, 0.8), "calibration": calibration},
            evaluate_outputs.PATIENT_LEVEL: evaluation_set(0.75, 0.55, 0.9), evaluate_outputs.EARLY_IMAGES: evaluation_set(0.65, 0.4, 0.85),
            evaluate_outputs.AGE_SEX: evaluation_set(0.6, 0.45, 0.75)}
    comparison = {"image_minus_age_sex": {"difference": 0.1, "low": -0.05, "high": 0.25}}
    run = {**run_record("original"), "evaluation": {"sets": sets, "admission_comparison": comparison}}
    rows = study_tables.beyond_rows([run])
    assert rows[0]["roc_auc_" + evaluate_outputs.PATIENT_LEVEL] == 0.75 and "roc_auc_" + evaluate_outputs.OBSERVED_TTA not in rows[0]
    text = study_tables.beyond_markdown(rows)
    assert ("| original | resnet18 | patient | 0.700 (0.500-0.800) | 0.750 (0.550-0.900) | 0.650 (0.400-0.850) | – "
            "| 0.600 (0.450-0.750) | – | +0.100 (-0.050 to +0.250) | 0.210 (0.100 to 0.300) | 0.400 (0.200 to 0.700) "
            "| -0.500 (-1.000 to 0.000) | 0.190 | 0.200 |") in text
    assert "ROC AUC, images of the first 7 days" in text and "ROC AUC, age + sex alone" in text


def test_table2_rows_come_from_table2():
    rows = study_tables.table_rows([run_record("original", arch="alexnet")], "2")
    assert rows[1]["roc_auc"] == 0.54 and rows[1]["tnr"] == 0.12


def test_the_repeated_table_puts_each_model_beside_the_admission_baselines_and_checks_the_goal():
    rows = study_tables.repeated_rows([repeated_run("resnet18", 0.70, 0.55, 0.84),
                                repeated_run("resnet18_stage3", 0.82, 0.72, 0.90), run_record("original")])
    assert [row["model"] for row in rows] == [
        "resnet18", "image + age + sex (resnet18)", "resnet18_stage3", "image + age + sex (resnet18_stage3)",
        "age + sex (logistic regression)"]
    assert [row["goal_met"] for row in rows] == [False, False, True, True, False]
    assert rows[-1]["roc_auc"] == 0.67 and rows[-1]["train_seconds"] is None and rows[0]["train_seconds"] == 900
    text = study_tables.repeated_markdown(rows)
    assert ("| resnet18_stage3 | original_weights | patient | 2 | 0.820 (0.720 to 0.900) | 0.820 (0.720 to 0.900) "
            "| 0.820 (0.720 to 0.900) | 0.820 (0.720 to 0.900) | 0.020 / 0.800-0.840 | +0.150 (-0.100 to +0.300) "
            "| yes | 900 |") in text
    assert rows[1]["model"].startswith("image + age + sex") and "image_minus_age_sex" not in rows[1]
    assert "| age + sex (logistic regression) | original_weights | patient | 2 | 0.670 (0.500 to 0.800)" in text


def test_a_goal_needs_the_lower_end_above_0_70_too():
    (row, *_) = study_tables.repeated_rows([repeated_run("resnet18", 0.81, 0.69, 0.90)])
    assert not row["goal_met"]


def test_runs_on_other_folds_are_not_put_in_one_repeated_table():
    with pytest.raises(PipelineError, match="resnet18_stage3 and resnet18 were cross-validated on other folds"):
        study_tables.repeated_rows([repeated_run("resnet18", 0.7, 0.5, 0.8),
                             repeated_run("resnet18_stage3", 0.7, 0.5, 0.8, age_sex_auc=0.6)])
