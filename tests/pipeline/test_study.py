"""The study's runner (pipeline/study.py): its errors, the data provenance, --compare and --audit."""

import dataclasses

import pytest
from absl.testing import flagsaver

from common.errors import PipelineError
from components import configs
from components.evaluate import outputs as evaluate_outputs
from pipeline import local_runner, study
from pipeline.pipeline import create_pipeline
from tests.components.evaluate.study_runs import repeated_run


def test_unknown_variant_is_a_clear_error(tmp_path, capsys):
    with flagsaver.flagsaver():
        study.FLAGS(["study", "--variants=original,bogus", f"--output_dir={tmp_path}",
                     f"--results_dir={tmp_path / 'r'}"])
        assert study.main([]) == 2  # app.run's exit status
    assert "--variants: unknown ['bogus']" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_data_provenance_names_the_snapshot_and_the_counts(tmp_path):
    config = configs.PipelineConfig(output_dir=tmp_path)
    artifacts = local_runner.run_pipeline(create_pipeline(config), "ingest", log=lambda _: None)
    described = study.data_provenance(artifacts)
    assert described["fingerprint"] == artifacts["data"].fingerprint and len(described["fingerprint"]) == 64
    labelled = described["ingest_counts"]["labelled"]
    assert labelled["count"] == labelled["died"] + labelled["survived"] > 0


def _committed(folder, run, split="patient"):
    """What a study leaves in its results folder: provenance listing the run, and the run's evaluation.json."""
    import json

    run_dir = folder / f"{run['variant']}_{run['arch']}_{split}"
    run_dir.mkdir(parents=True)
    (run_dir / evaluate_outputs.EVALUATION_NAME).write_text(json.dumps(run["evaluation"]))
    (folder / f"provenance_table1_{split}.json").write_text(json.dumps({
        "command": run["command"], "git_commit": "abc1234",
        "runs": [{"variant": run["variant"], "arch": run["arch"], "split": split, "train_seconds": 900.0}]}))


def test_compare_writes_one_table_from_the_results_folders_of_earlier_studies(tmp_path):
    import json

    _committed(tmp_path / "a", repeated_run("resnet18", 0.70, 0.55, 0.84))
    _committed(tmp_path / "b", repeated_run("resnet18_stage3", 0.74, 0.6, 0.85))
    stem = study.compare([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out", "python -m pipeline.study x",
                         10, 0)
    assert stem == tmp_path / "out" / "comparison_patient"
    text = stem.with_suffix(".md").read_text()
    assert text.index("| resnet18 |") < text.index("| resnet18_stage3 |") < text.index("| age + sex")
    provenance = json.loads((tmp_path / "out" / "provenance_comparison_patient.json").read_text())
    assert [s["command"] for s in provenance["sources"]] == ["python -m pipeline.study --arch=resnet18",
                                                             "python -m pipeline.study --arch=resnet18_stage3"]
    assert provenance["command"] == "python -m pipeline.study x"


def test_compare_reads_the_commit_before_it_writes_the_table(tmp_path, monkeypatch):
    """A table re-made over its committed version would otherwise mark its own commit as dirty."""
    _committed(tmp_path / "a", repeated_run("resnet18", 0.70, 0.55, 0.84))
    written_at_read = []
    monkeypatch.setattr(study, "git_commit",
                        lambda: written_at_read.append((tmp_path / "out" / "comparison_patient.md").exists()) or "c0")
    study.compare([str(tmp_path / "a")], tmp_path / "out", "cmd", 10, 0)
    assert written_at_read == [False]


def test_compare_refuses_a_mix_of_repeated_and_single_studies_or_a_folder_without_a_study(tmp_path):
    single = repeated_run("resnet18", 0.7, 0.5, 0.8)
    single["evaluation"] = {}
    _committed(tmp_path / "single", single)
    _committed(tmp_path / "repeated", repeated_run("resnet18", 0.7, 0.5, 0.8))
    with pytest.raises(PipelineError, match=r"no repeated cross-validation in original_weights resnet18 \(.*single\)"):
        study.compare([str(tmp_path / "repeated"), str(tmp_path / "single")], tmp_path / "out", "cmd", 10, 0)
    with pytest.raises(PipelineError, match="nowhere is not a folder"):
        study.compare([str(tmp_path / "nowhere")], tmp_path / "out", "cmd", 10, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="holds no study provenance"):
        study.compare([str(tmp_path / "empty")], tmp_path / "out", "cmd", 10, 0)
    assert not (tmp_path / "out").exists()


def _single_study(folder, runs, commit):
    """A study without --repeats as its results folder keeps it: provenance, and per variant its evaluation.json
    and out-of-fold predictions; `runs` maps a variant to (ROC AUC interval, rows of fold, source_id, patient,
    label, label_source, probability)."""
    import json

    for variant, ((low, high), rows) in runs.items():
        run_dir = folder / f"{variant}_resnet18_patient"
        for fold in sorted({row[0] for row in rows}):
            (run_dir / f"fold_{fold}").mkdir(parents=True)
            lines = ["source_id,patient,label,label_source,probability"]
            lines += [",".join(map(str, row[1:])) for row in rows if row[0] == fold]
            (run_dir / f"fold_{fold}" / "predictions.csv").write_text("\n".join(lines) + "\n")
        (run_dir / evaluate_outputs.EVALUATION_NAME).write_text(json.dumps({"metrics": {
            "roc_auc": {"estimate": 0.5, "ci_low": low, "ci_high": high},
            "balanced_accuracy": {"estimate": 0.5 + len(rows) / 100}}}))
    (folder / "provenance_table1_patient.json").write_text(json.dumps({
        "command": f"python -m pipeline.study --results_dir={folder}", "git_commit": commit,
        "runs": [{"variant": v, "arch": "resnet18", "split": "patient", "train_seconds": 60.0} for v in runs]}))
    return str(folder)


# Observed images a-d: ranked at ROC AUC 1/4 before, at 1 after; the imputed image e counts in neither.
BEFORE = [(0, "a.png", "p1", 1, "observed", 0.6), (0, "b.png", "p2", 0, "observed", 0.7),
          (1, "c.png", "p3", 1, "observed", 0.3), (1, "d.png", "p4", 0, "observed", 0.4)]
AFTER = [(0, "a.png", "p1", 1, "observed", 0.9), (1, "b.png", "p2", 0, "observed", 0.2),
         (1, "c.png", "p3", 1, "observed", 0.8), (0, "d.png", "p4", 0, "observed", 0.1),
         (0, "e.png", "p5", 0, "imputed", 0.95)]


def test_compare_puts_two_studies_without_repeats_side_by_side_paired_on_the_same_images(tmp_path):
    import json

    before = _single_study(tmp_path / "before", {"imputed": ((0.1, 0.5), BEFORE), "original": ((0.1, 0.5), BEFORE)},
                           "a" * 40)
    after = _single_study(tmp_path / "after", {"original_weights": ((0.2, 0.6), AFTER),
                                               "imputed": ((0.8, 1.0), AFTER)}, "b" * 40)
    stem = study.compare([before, after], tmp_path / "out", "python -m pipeline.study x", 200, 0)
    assert stem == tmp_path / "out" / "rerun_patient"
    text = stem.with_suffix(".md").read_text()
    assert text.startswith(f"Before: {before} (git aaaaaaa); after: {after} (git bbbbbbb).")
    [row] = [line for line in text.splitlines() if line.startswith("| imputed ")]  # only the variant both ran
    assert row.startswith("| imputed | resnet18 | patient | 4 (2) | 0.250 (0.100-0.500) | 1.000 (0.800-1.000) | +0.750 (")
    assert row.endswith("| 0.540 | 0.550 |")
    provenance = json.loads((tmp_path / "out" / "provenance_rerun_patient.json").read_text())
    assert (provenance["bootstrap_resamples"], provenance["command"]) == (200, "python -m pipeline.study x")
    assert [s["git_commit"] for s in provenance["sources"]] == ["a" * 40] * 2 + ["b" * 40] * 2
    again = study.compare([before, before], tmp_path / "same", "cmd", 200, 0).with_suffix(".md").read_text()
    assert [line.split(" | ")[6] for line in again.splitlines() if line.startswith("| imputed")] == [
        "+0.000 (+0.000 to +0.000)"]  # a folder beside itself: one row a variant, nothing changed


def test_compare_of_studies_without_repeats_refuses_other_than_two_or_nothing_to_pair(tmp_path):
    before = _single_study(tmp_path / "before", {"imputed": ((0.1, 0.5), BEFORE)}, "a" * 40)
    other = _single_study(tmp_path / "other", {"original": ((0.1, 0.5), AFTER)}, "b" * 40)
    fewer = _single_study(tmp_path / "fewer", {"imputed": ((0.1, 0.5), AFTER[:3])}, "c" * 40)
    with pytest.raises(PipelineError, match=r"compared two at a time, the earlier first \(got 1\)"):
        study.compare([before], tmp_path / "out", "cmd", 10, 0)
    with pytest.raises(PipelineError, match=r"compared two at a time, the earlier first \(got 3\)"):
        study.compare([before, other, fewer], tmp_path / "out", "cmd", 10, 0)
    with pytest.raises(PipelineError, match="share no variant of one model"):
        study.compare([before, other], tmp_path / "out", "cmd", 10, 0)
    with pytest.raises(PipelineError, match=r"imputed resnet18 before and after scored different observed images, "
                                            r"e\.g\. 'd\.png'"):
        study.compare([before, fewer], tmp_path / "out", "cmd", 10, 0)
    assert not (tmp_path / "out").exists()


def test_compare_refuses_runs_of_two_splits(tmp_path):
    _committed(tmp_path / "a", repeated_run("resnet18", 0.7, 0.5, 0.8))
    _committed(tmp_path / "b", repeated_run("resnet18", 0.7, 0.5, 0.8), split="image")
    with pytest.raises(PipelineError, match=r"runs of other splits \(image, patient\)"):
        study.compare([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out", "cmd", 10, 0)


def test_audit_refuses_a_folder_without_a_study_before_it_reads_any_data(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with flagsaver.flagsaver():
        study.FLAGS(["study", f"--audit={tmp_path / 'empty'}", f"--data_dir={tmp_path / 'no_data'}",
                     f"--output_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'r'}"])
        assert study.main([]) == 2
    assert "holds no study provenance" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "runs").exists()


def test_audit_site_without_audit_is_refused_before_anything_runs(tmp_path, capsys):
    with flagsaver.flagsaver():
        study.FLAGS(["study", f"--audit_site={tmp_path / 'site_study'}", f"--output_dir={tmp_path / 'runs'}",
                     f"--results_dir={tmp_path / 'r'}"])
        assert study.main([]) == 2
    assert capsys.readouterr().err == "error: --audit_site adds studies to --audit: give --audit too (nothing was run)\n"
    assert not (tmp_path / "r").exists() and not (tmp_path / "runs").exists()


def test_runs_that_differ_only_in_method_or_auxiliary_targets_are_named_apart():
    train = configs.TrainConfig(arch="resnet18_stage3")
    names = [study.model_name(dataclasses.replace(train, method=method, aux_targets=aux))
             for method in ("fine_tune", "linear_probe", "lp_ft") for aux in ("", "went_icu")]
    assert names == ["resnet18_stage3", "resnet18_stage3+aux", "resnet18_stage3+linear_probe",
                     "resnet18_stage3+linear_probe+aux", "resnet18_stage3+lp_ft", "resnet18_stage3+lp_ft+aux"]
