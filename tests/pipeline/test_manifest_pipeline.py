"""A hospital's manifest through the pipeline: no patient id, UID file name or key in any byte written or
printed; pseudonyms stable for one key; the --lookup round trip; bad input stops before anything is written."""

import subprocess
import sys

import pytest

from common.errors import PipelineError
from components import configs, ingest
from pipeline import local_runner, manifest
from pipeline.pipeline import create_pipeline
from tests.sources.manifest_data import hospital, identifiers, write_manifest

TINY_TRAIN = configs.TrainConfig(image_size=32, folds=2, epochs_frozen=1, epochs_unfrozen=1, lr_finder_steps=4,
                                 batch_size=8, precision="fp32", arch="resnet18_stage3")
TINY_EVALUATE = configs.EvaluateConfig(bootstrap_resamples=50, gradcam_images=1)


def _run(data_dir, output_dir, key, stop_after="tfrecords", **overrides):
    config = configs.PipelineConfig(data_dir=data_dir, output_dir=output_dir, pseudonym_key=key, **overrides)
    log = []
    return local_runner.run_pipeline(create_pipeline(config), stop_after, log=log.append), log


def _leaks(output_dir, printed, secrets):
    """(where, secret) for each secret found in a file under `output_dir` or in the printed text."""
    found = [(str(path), secret) for path in sorted(output_dir.rglob("*")) if path.is_file()
             for secret in secrets if secret in path.read_bytes()]
    return found + [("printed", secret) for secret in secrets if secret in printed.encode()]


def _secrets(rows, key_path):
    key = key_path.read_text().strip()
    return [*identifiers(rows), key.encode(), bytes.fromhex(key)]


def _page_answers(model, data_dir, rows) -> list[str]:
    """What the page (`serving/explain.py`) answers for each of the folder's images, as JSON: the DICOM header
    fields it shows, its warnings, the model card's status."""
    import json

    from pipeline import score
    from serving import explain

    explainer = explain.Explainer(score.resolve_model(model), configs.FRONTAL_VIEWS)
    answers = [explainer.explain(data_dir / row["image"]).result for row in rows]
    # a DICOM file's header fields were read and shown, a PNG has none
    assert [bool(answer["dicom"]) for answer in answers] == [not row["image"].endswith(".png") for row in rows]
    return [json.dumps(answer) for answer in answers]


@pytest.fixture(scope="module")
def without_flags(tmp_path_factory):
    """A manifest without the outcome-adjacent columns, up to the TFRecords."""
    root = tmp_path_factory.mktemp("hospital")
    rows = hospital(root / "data", images=12, clinical=False)
    artifacts, log = _run(root / "data", root / "out", root / "keys" / "pseudonym.key")
    return root, rows, artifacts, log


def test_no_identifier_leaves_the_hospital_up_to_the_tfrecords(without_flags, capfd):
    root, rows, artifacts, log = without_flags
    assert artifacts["tfrecords"].counts["num_examples"] == 12
    assert _leaks(root / "out", "\n".join(log) + "".join(capfd.readouterr()), _secrets(rows, root / "keys" /
                                                                                        "pseudonym.key")) == []
    assert any("created the pseudonym key" in line for line in log)


def test_examples_keep_age_sex_site_and_pseudonymous_patients(without_flags):
    root, rows, artifacts, _ = without_flags
    examples = ingest.read_examples(artifacts["ingest"])
    assert list(examples[0])[-1] == "site" and "went_icu" not in examples[0]
    assert {row["patientid"][:3] for row in examples} == {"pt-"}
    assert len({row["patientid"] for row in examples}) == 6
    assert [(row["age"], row["sex"], row["offset"]) for row in examples[:3]] == [("50", "M", "0"), ("50", "M", "1"),
                                                                                 ("55", "F", "2")]
    assert artifacts["ingest"].counts["view_assumed_frontal"] == 3


def test_without_the_flags_imputation_is_reported_impossible_and_imputed_variants_refuse(without_flags):
    root, _, artifacts, _ = without_flags
    assert artifacts["impute"].counts["imputation_missing_columns"] == [
        "went_icu", "needed_supplemental_O2", "intubation_present", "extubated"]
    with pytest.raises(PipelineError, match="--variant=imputed_weights .* no column.s. went_icu, "
                                            "needed_supplemental_O2, intubation_present, extubated"):
        _run(root / "data", root / "out", root / "keys" / "pseudonym.key", stop_after="train",
             variant="imputed_weights", train=TINY_TRAIN)


def test_pseudonyms_are_stable_for_a_key_and_change_with_it(without_flags, tmp_path):
    root, _, artifacts, _ = without_flags
    again, _ = _run(root / "data", tmp_path / "same", root / "keys" / "pseudonym.key", stop_after="ingest")
    other, _ = _run(root / "data", tmp_path / "other", tmp_path / "other.key", stop_after="ingest")
    patients = lambda a: [row["patientid"] for row in ingest.read_examples(a["ingest"])]  # noqa: E731
    assert patients(again) == patients(artifacts)
    assert set(patients(other)).isdisjoint(patients(artifacts))


def test_lookup_maps_the_outputs_back_inside_the_hospital(without_flags, capsys):
    root, rows, artifacts, _ = without_flags
    example = ingest.read_examples(artifacts["ingest"])[0]
    argv = ["--lookup", example["patientid"], example["source_id"], f"--data_dir={root / 'data'}",
            f"--pseudonym_key={root / 'keys' / 'pseudonym.key'}"]
    assert manifest.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{example['patientid']}\t{rows[0]['patient_id']}",
        f"{example['source_id']}\t{(root / 'data' / rows[0]['image']).resolve()}"]
    assert manifest.main(["--lookup", "pt-0000000000000000", *argv[1:]]) == 1


def test_a_key_inside_the_output_folder_is_refused(without_flags, tmp_path):
    root = without_flags[0]
    with pytest.raises(PipelineError, match="inside --output_dir"):
        _run(root / "data", tmp_path / "out", tmp_path / "out" / "pseudonym.key")


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path):
    rows = hospital(tmp_path / "data", images=6)
    rows[4]["died"] = "yes"
    write_manifest(tmp_path / "data", rows)
    run = subprocess.run([sys.executable, "-m", "pipeline.run", f"--data_dir={tmp_path / 'data'}",
                          f"--output_dir={tmp_path / 'out'}", f"--pseudonym_key={tmp_path / 'key'}"],
                         cwd=configs.REPO_ROOT, capture_output=True, text=True)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'data' / 'manifest.csv'} line 6, column died: 'yes' is not 1, 0 or blank"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_whole_pipeline_writes_no_identifier(tmp_path, capfd):
    """Train, evaluate (with Grad-CAM), export and report on a manifest with the flags, its images PNG and DICOM
    with every identifying header attribute filled: no identifier in any byte written or printed, nor in what
    the validation and the page's answers show."""
    rows = hospital(tmp_path / "data", images=18, dicom=True)
    config = dict(train=TINY_TRAIN, evaluate=TINY_EVALUATE, impute=configs.ImputeConfig(cv_folds=2),
                  variant="original_weights")
    artifacts, log = _run(tmp_path / "data", tmp_path / "out", tmp_path / "keys" / "k", stop_after=None, **config)
    assert "report" in artifacts
    modes = [row["source_mode"].split()[0] for row in ingest.read_examples(artifacts["ingest"])]
    assert artifacts["ingest"].counts["usable"] == 18 and sorted(modes) == ["DICOM"] * 9 + ["L"] * 9
    # the hospital then validates the model on the same folder: its outputs must hold no identifier either
    validated = subprocess.run(
        [sys.executable, "-m", "pipeline.validate",
         f"--model={tmp_path / 'out' / 'serving' / 'covid_cxr_mortality_demo'}",
         f"--data_dir={tmp_path / 'data'}", f"--output_dir={tmp_path / 'out' / 'validation'}",
         f"--pseudonym_key={tmp_path / 'keys' / 'k'}", "--bootstrap_resamples=20"],
        cwd=configs.REPO_ROOT, capture_output=True, text=True)
    assert validated.returncode == 0, validated.stderr[-2000:]
    assert (tmp_path / "out" / "validation" / "report.html").is_file()
    log.append(validated.stdout + validated.stderr)
    log += _page_answers(tmp_path / "out" / "serving" / "covid_cxr_mortality_demo", tmp_path / "data", rows)
    assert _leaks(tmp_path / "out", "\n".join(log) + "".join(capfd.readouterr()),
                  _secrets(rows, tmp_path / "keys" / "k")) == []
