import subprocess
import sys

from pipeline import configs, study


def _run(variant, arch="resnet18", auc=0.7):
    metrics = {name: {"mean": auc, "ci_low": auc - 0.1, "ci_high": auc + 0.1} for name in study.COLUMNS}
    return {"variant": variant, "arch": arch, "split": "patient", "evaluation": {"metrics": metrics}}


def test_each_of_our_rows_is_followed_by_the_papers():
    rows = study.table_rows([_run("original"), _run("imputed_resample", auc=0.6)], "1")
    assert [(r["source"], r["variant"]) for r in rows] == [
        ("ours", "original"), ("paper", "original"), ("ours", "imputed_resample"), ("paper", "imputed_resample")]
    assert rows[1]["roc_auc"] == 0.90 and rows[3]["fpr"] == 0.052  # copied as printed
    assert rows[0]["roc_auc_ci"] == "0.600-0.800"
    text = study.markdown(rows)
    assert "| original | resnet18 | ours (patient split) | 0.700 (0.600-0.800)" in text
    assert "| original | resnet18 | paper (image split) | 0.890 | 0.900" in text


def _set(auc, low, high):
    return {"fold_mean": {"roc_auc": {"mean": auc}}, "bootstrap": {"intervals": {"roc_auc": {"low": low, "high": high}}}}


def test_beyond_table_shows_each_computed_set_and_leaves_the_others_empty():
    sets = {study.OBSERVED: {**_set(0.7, 0.5, 0.8), "calibration": {"ece": 0.21, "brier": 0.19, "base_rate": 0.2}},
            study.PATIENT_LEVEL: _set(0.75, 0.55, 0.9), study.EARLY_IMAGES: _set(0.65, 0.4, 0.85)}
    run = {**_run("original"), "evaluation": {"sets": sets}}
    rows = study.beyond_rows([run])
    assert rows[0]["roc_auc_" + study.PATIENT_LEVEL] == 0.75 and "roc_auc_" + study.OBSERVED_TTA not in rows[0]
    text = study.beyond_markdown(rows)
    assert ("| original | resnet18 | patient | 0.700 (0.500-0.800) | 0.750 (0.550-0.900) | 0.650 (0.400-0.850) | – "
            "| 0.210 | 0.190 | 0.200 |") in text
    assert "ROC AUC, images of the first 7 days" in text


def test_table2_rows_come_from_table2():
    rows = study.table_rows([_run("original", arch="alexnet")], "2")
    assert rows[1]["roc_auc"] == 0.54 and rows[1]["tnr"] == 0.12


def test_unknown_variant_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.study", "--variants=original,bogus",
                             f"--output_dir={tmp_path}", f"--results_dir={tmp_path / 'r'}"],
                            capture_output=True, text=True, cwd=configs.REPO_ROOT, timeout=120)
    assert result.returncode == 2 and "bogus" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()
