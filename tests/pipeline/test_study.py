import os

import pytest
from absl.testing import flagsaver

from common.errors import PipelineError
from components import configs
from pipeline import local_runner, study
from pipeline.pipeline import create_pipeline


def _run(variant, arch="resnet18", auc=0.7):
    metrics = {name: {"estimate": auc, "ci_low": auc - 0.1, "ci_high": auc + 0.1, "fold_mean": auc + 0.02,
                      "fold_std": 0.05} for name in study.COLUMNS}
    return {"variant": variant, "arch": arch, "split": "patient", "evaluation": {"metrics": metrics}}


def test_each_of_our_rows_is_followed_by_the_papers():
    rows = study.table_rows([_run("original"), _run("imputed_resample", auc=0.6)], "1")
    assert [(r["source"], r["variant"]) for r in rows] == [
        ("ours", "original"), ("paper", "original"), ("ours", "imputed_resample"), ("paper", "imputed_resample")]
    assert rows[1]["roc_auc"] == 0.90 and rows[3]["fpr"] == 0.052  # copied as printed
    assert rows[0]["roc_auc_ci"] == "0.600-0.800" and rows[0]["roc_auc_folds"] == "0.720±0.050"
    text = study.markdown(rows)
    assert "| original | resnet18 | ours (patient split) | 0.700 (0.600-0.800; folds 0.720±0.050)" in text
    assert text.startswith("Ours: pooled out-of-fold estimate")
    assert "| original | resnet18 | paper (image split) | 0.890 | 0.900" in text


def test_table_2_rows_carry_the_papers_numbers_for_that_architecture():
    rows = study.table_rows([_run("original", arch="convnext")], "2")
    assert rows[1]["arch"] == "convnext" and rows[1]["roc_auc"] == 0.50 and rows[1]["tnr"] == 0.0


def _set(auc, low, high):
    return {"pooled": {"roc_auc": auc}, "fold_mean": {"roc_auc": {"mean": auc + 0.05}},
            "bootstrap": {"intervals": {"roc_auc": {"low": low, "high": high}}}}


def test_a_model_the_paper_did_not_run_has_no_paper_row():
    rows = study.table_rows([_run("original_weights", arch="resnet18+linear_probe")], "1")
    assert [row["source"] for row in rows] == ["ours"]


def test_beyond_table_shows_each_computed_set_and_leaves_the_others_empty():
    interval = {"low": 0.1, "high": 0.3}
    calibration = {"ece": 0.21, "slope": 0.4, "intercept": -0.5, "brier": 0.19, "base_rate": 0.2,
                   "intervals": {"ece": interval, "slope": {"low": 0.2, "high": 0.7},
                                 "intercept": {"low": -1, "high": 0}}}
    sets = {study.OBSERVED: {**_set(0.7, 0.5, 0.8), "calibration": calibration},
            study.PATIENT_LEVEL: _set(0.75, 0.55, 0.9), study.EARLY_IMAGES: _set(0.65, 0.4, 0.85),
            study.AGE_SEX: _set(0.6, 0.45, 0.75)}
    comparison = {"image_minus_age_sex": {"difference": 0.1, "low": -0.05, "high": 0.25}}
    run = {**_run("original"), "evaluation": {"sets": sets, "admission_comparison": comparison}}
    rows = study.beyond_rows([run])
    assert rows[0]["roc_auc_" + study.PATIENT_LEVEL] == 0.75 and "roc_auc_" + study.OBSERVED_TTA not in rows[0]
    text = study.beyond_markdown(rows)
    assert ("| original | resnet18 | patient | 0.700 (0.500-0.800) | 0.750 (0.550-0.900) | 0.650 (0.400-0.850) | – "
            "| 0.600 (0.450-0.750) | – | +0.100 (-0.050 to +0.250) | 0.210 (0.100 to 0.300) | 0.400 (0.200 to 0.700) "
            "| -0.500 (-1.000 to 0.000) | 0.190 | 0.200 |") in text
    assert "ROC AUC, images of the first 7 days" in text and "ROC AUC, age + sex alone" in text


def test_table2_rows_come_from_table2():
    rows = study.table_rows([_run("original", arch="alexnet")], "2")
    assert rows[1]["roc_auc"] == 0.54 and rows[1]["tnr"] == 0.12


def test_unknown_variant_is_a_clear_error(tmp_path, capsys):
    with flagsaver.flagsaver():
        study.FLAGS(["study", "--variants=original,bogus", f"--output_dir={tmp_path}",
                     f"--results_dir={tmp_path / 'r'}"])
        assert study.main([]) == 2  # app.run's exit status
    assert "--variants: unknown ['bogus']" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _train_dir(path, rows):
    """A train artifact's out-of-fold predictions: (fold, source_id, patient, label, label_source, probability)."""
    for fold in {row[0] for row in rows}:
        (path / f"fold_{fold}").mkdir(parents=True)
        lines = ["source_id,patient,label,label_source,probability"]
        lines += [",".join(map(str, row[1:])) for row in rows if row[0] == fold]
        (path / f"fold_{fold}" / "predictions.csv").write_text("\n".join(lines) + "\n")
    return str(path)


# Observed images a-d: the original variant ranks them at ROC AUC 1/4, the imputed one at 1.
ORIGINAL = [(0, "a.png", "p1", 1, "observed", 0.6), (0, "b.png", "p2", 0, "observed", 0.7),
            (1, "c.png", "p3", 1, "observed", 0.3), (1, "d.png", "p4", 0, "observed", 0.4)]
IMPUTED = [(0, "a.png", "p1", 1, "observed", 0.9), (1, "b.png", "p2", 0, "observed", 0.2),
           (1, "c.png", "p3", 1, "observed", 0.8), (0, "d.png", "p4", 0, "observed", 0.1),
           (0, "e.png", "p5", 0, "imputed", 0.95)]


def _paired_runs(tmp_path, imputed_rows=IMPUTED):
    return [{"variant": "original_weights", "arch": "resnet18", "split": "patient",
             "artifacts": {"train": _train_dir(tmp_path / "original", ORIGINAL)}},
            {"variant": "imputed_weights", "arch": "resnet18", "split": "patient",
             "artifacts": {"train": _train_dir(tmp_path / "imputed", imputed_rows)}},
            {"variant": "imputed", "arch": "resnet18", "split": "patient", "artifacts": {}}]  # no original: skipped


def test_the_imputation_effect_compares_both_variants_on_the_same_observed_images(tmp_path):
    assert study.imputation_pairs() == [("original", "imputed"), ("original_weights", "imputed_weights"),
                                        ("original_resample", "imputed_resample")]
    [row] = study.imputation_effect(_paired_runs(tmp_path), resamples=200, seed=0)
    assert (row["original"], row["imputed"], row["images"], row["deaths"]) == ("original_weights", "imputed_weights",
                                                                              4, 2)  # the imputed image e is out
    assert row["roc_auc_first"] == 0.25 and row["roc_auc_second"] == 1.0 and row["difference"] == 0.75
    assert 0 <= row["low"] <= 0.75 <= row["high"] <= 1 and row["unit_count"] == 4
    assert 0 < row["valid_resamples"] < 200  # resamples of one class only are left out
    assert "| original_weights | imputed_weights | resnet18 | patient | 4 (2) | 0.250 | 1.000 | +0.750 (" in \
        study.imputation_markdown([row])


def test_variants_that_scored_different_images_are_refused_by_name(tmp_path):
    with pytest.raises(PipelineError, match=r"original_weights and imputed_weights \(resnet18\) scored different "
                                            r"observed images, e\.g\. 'd\.png'"):
        study.imputation_effect(_paired_runs(tmp_path, IMPUTED[:3]), resamples=10, seed=0)


def test_the_machine_names_its_cpu_and_cores():
    described = study.machine()
    assert described["cores"] == os.cpu_count()
    assert len(described["gpus"]) == len(study.tf.config.list_physical_devices("GPU"))
    with open("/proc/cpuinfo") as handle:
        assert described["cpu"] in handle.read()


def test_the_data_provenance_names_the_snapshot_and_the_counts(tmp_path):
    config = configs.PipelineConfig(output_dir=tmp_path)
    artifacts = local_runner.run_pipeline(create_pipeline(config), "ingest", log=lambda _: None)
    described = study.data_provenance(artifacts)
    assert described["fingerprint"] == artifacts["data"].fingerprint and len(described["fingerprint"]) == 64
    labelled = described["ingest_counts"]["labelled"]
    assert labelled["count"] == labelled["died"] + labelled["survived"] > 0


def _summary(auc, low, high, sd=0.02):
    metrics = {name: {"mean": auc, "ci_low": low, "ci_high": high, "sd": sd, "min": auc - sd, "max": auc + sd}
               for name in study.REPEATED_COLUMNS}
    return {"metrics": metrics, "per_repeat": [{"roc_auc": auc - sd}, {"roc_auc": auc + sd}]}


def _repeated_run(arch, auc, low, high, age_sex_auc=0.67, split_seeds=(0, 7)):
    repeated = {**_summary(auc, low, high), "repeats": 2, "split_seeds": list(split_seeds),
                "image_minus_age_sex": {"difference": auc - age_sex_auc, "low": -0.1, "high": 0.3},
                "baselines": {"age_sex": _summary(age_sex_auc, 0.5, 0.8),
                              "image_age_sex": _summary(auc + 0.01, low, high)}}
    return {**_run("original_weights", arch=arch), "evaluation": {"repeated_cv": repeated},
            "train_seconds": 900.0, "command": f"python -m pipeline.study --arch={arch}"}


def test_the_repeated_table_puts_each_model_beside_the_admission_baselines_and_checks_the_goal():
    rows = study.repeated_rows([_repeated_run("resnet18", 0.70, 0.55, 0.84),
                                _repeated_run("resnet18_stage3", 0.82, 0.72, 0.90), _run("original")])
    assert [row["model"] for row in rows] == [
        "resnet18", "image + age + sex (resnet18)", "resnet18_stage3", "image + age + sex (resnet18_stage3)",
        "age + sex (logistic regression)"]
    assert [row["goal_met"] for row in rows] == [False, False, True, True, False]
    assert rows[-1]["roc_auc"] == 0.67 and rows[-1]["train_seconds"] is None and rows[0]["train_seconds"] == 900
    text = study.repeated_markdown(rows)
    assert ("| resnet18_stage3 | original_weights | patient | 2 | 0.820 (0.720 to 0.900) | 0.820 (0.720 to 0.900) "
            "| 0.820 (0.720 to 0.900) | 0.820 (0.720 to 0.900) | 0.020 / 0.800-0.840 | +0.150 (-0.100 to +0.300) "
            "| yes | 900 |") in text
    assert rows[1]["model"].startswith("image + age + sex") and "image_minus_age_sex" not in rows[1]
    assert "| age + sex (logistic regression) | original_weights | patient | 2 | 0.670 (0.500 to 0.800)" in text


def test_a_goal_needs_the_lower_end_above_0_70_too():
    (row, *_) = study.repeated_rows([_repeated_run("resnet18", 0.81, 0.69, 0.90)])
    assert not row["goal_met"]


def test_runs_on_other_folds_are_not_put_in_one_repeated_table():
    with pytest.raises(PipelineError, match="resnet18_stage3 and resnet18 were cross-validated on other folds"):
        study.repeated_rows([_repeated_run("resnet18", 0.7, 0.5, 0.8),
                             _repeated_run("resnet18_stage3", 0.7, 0.5, 0.8, age_sex_auc=0.6)])


def _committed(folder, run, split="patient"):
    """What a study leaves in its results folder: provenance listing the run, and the run's evaluation.json."""
    import json

    run_dir = folder / f"{run['variant']}_{run['arch']}_{split}"
    run_dir.mkdir(parents=True)
    (run_dir / study.EVALUATION_NAME).write_text(json.dumps(run["evaluation"]))
    (folder / f"provenance_table1_{split}.json").write_text(json.dumps({
        "command": run["command"], "git_commit": "abc1234",
        "runs": [{"variant": run["variant"], "arch": run["arch"], "split": split, "train_seconds": 900.0}]}))


def test_compare_writes_one_table_from_the_results_folders_of_earlier_studies(tmp_path):
    import json

    _committed(tmp_path / "a", _repeated_run("resnet18", 0.70, 0.55, 0.84))
    _committed(tmp_path / "b", _repeated_run("resnet18_stage3", 0.74, 0.6, 0.85))
    stem = study.compare([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out", "python -m pipeline.study x")
    assert stem == tmp_path / "out" / "comparison_patient"
    text = stem.with_suffix(".md").read_text()
    assert text.index("| resnet18 |") < text.index("| resnet18_stage3 |") < text.index("| age + sex")
    provenance = json.loads((tmp_path / "out" / "provenance_comparison_patient.json").read_text())
    assert [s["command"] for s in provenance["sources"]] == ["python -m pipeline.study --arch=resnet18",
                                                             "python -m pipeline.study --arch=resnet18_stage3"]
    assert provenance["command"] == "python -m pipeline.study x"


def test_compare_refuses_a_folder_without_repeats_or_without_a_study(tmp_path):
    single = _repeated_run("resnet18", 0.7, 0.5, 0.8)
    single["evaluation"] = {}
    _committed(tmp_path / "single", single)
    with pytest.raises(PipelineError, match=r"no repeated cross-validation in original_weights resnet18 \(.*single\)"):
        study.compare([str(tmp_path / "single")], tmp_path / "out", "cmd")
    with pytest.raises(PipelineError, match="nowhere is not a folder"):
        study.compare([str(tmp_path / "nowhere")], tmp_path / "out", "cmd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="holds no study provenance"):
        study.compare([str(tmp_path / "empty")], tmp_path / "out", "cmd")
    assert not (tmp_path / "out").exists()


def test_compare_refuses_runs_of_two_splits(tmp_path):
    _committed(tmp_path / "a", _repeated_run("resnet18", 0.7, 0.5, 0.8))
    _committed(tmp_path / "b", _repeated_run("resnet18", 0.7, 0.5, 0.8), split="image")
    with pytest.raises(PipelineError, match=r"runs of other splits \(image, patient\)"):
        study.compare([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out", "cmd")
