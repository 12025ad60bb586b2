"""The DICOM twin of the sample (a hospital's manifest of DICOM files) from ingest to the report and a pushed
SavedModel, once, with the cheapest settings the suite uses."""

import json

import pytest

from components import configs, export, ingest, model_card, report
from pipeline import local_runner
from pipeline.pipeline import create_pipeline
from tests.pipeline.test_manifest_pipeline import TINY_EVALUATE, TINY_TRAIN

DICOM_TWIN = configs.SAMPLE_DATA_DIR.parent / "covid-chestxray-dicom"


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    config = configs.PipelineConfig(data_dir=DICOM_TWIN, output_dir=root / "out", pseudonym_key=root / "keys" / "k",
                                    train=TINY_TRAIN, evaluate=TINY_EVALUATE, impute=configs.ImputeConfig(cv_folds=2),
                                    variant="original_weights")
    return root, local_runner.run_pipeline(create_pipeline(config), None, log=lambda _: None)


def test_ingest_counts_match_the_twin(twin_run):
    _, artifacts = twin_run
    counts = artifacts["ingest"].counts
    assert (counts["schema"], counts["rows"], counts["usable"], counts["rejected_images"]) == ("manifest", 42, 42, 0)
    modes = [row["source_mode"] for row in ingest.read_examples(artifacts["ingest"])]
    assert modes.count("DICOM MONOCHROME1 12-bit") == 1  # rendered, not rejected


def test_the_report_names_the_manifest_data(twin_run):
    _, artifacts = twin_run
    text = (artifacts["report"].path / report.REPORT_NAME).read_text()
    assert "Rows in manifest.csv" in text and "Rows in metadata.csv" not in text and "Study (test)" not in text
    assert "Sites: not given." in text and "Burned-in annotation (DICOM header BurnedInAnnotation YES): 0." in text


def test_a_demo_saved_model_is_pushed_with_a_card_of_the_hospitals_data(twin_run):
    root, artifacts = twin_run
    record = json.loads((artifacts["export"].path / export.EXPORT_JSON).read_text())
    assert record["demo"] and record["pushed_version"] is not None
    assert (root / "out" / "serving" / record["model_name"] / str(record["pushed_version"]) / "saved_model.pb").is_file()
    card = model_card.read(artifacts["export"].path / export.SAVED_MODEL_DIR)
    assert card["data"]["source"] == "manifest" and card["data"]["folder"] == DICOM_TWIN.name
    assert card["intended_use"] == model_card.HOSPITAL_INTENDED_USE
    assert str(DICOM_TWIN.parent) not in json.dumps(card)
