"""The committed DICOM twin of the embedded sample: reproducible byte for byte, and read as the sample."""

import csv
import importlib.util
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from components import configs, ingest
from images import dicom, image_io, preprocessing

TOOL = configs.REPO_ROOT / "tools" / "make_dicom_sample.py"
TWIN = configs.REPO_ROOT / "sample_data" / "covid-chestxray-dicom"
SAMPLE = configs.REPO_ROOT / "sample_data" / "covid-chestxray-sample"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("make_dicom_sample", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def manifest():
    with open(TWIN / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_tool_writes_the_committed_folder_byte_for_byte(tmp_path):
    subprocess.run([sys.executable, str(TOOL), f"--output={tmp_path / 'twin'}"], check=True, capture_output=True)
    written = sorted(p.name for p in (tmp_path / "twin").iterdir())
    assert written == sorted(p.name for p in TWIN.iterdir())
    for name in written:
        assert (tmp_path / "twin" / name).read_bytes() == (TWIN / name).read_bytes(), name


def test_every_file_renders_the_sample_pixels_and_passes_screening(tool, manifest):
    examples = ingest.ingest(SAMPLE, configs.FRONTAL_VIEWS)["examples"]
    assert len(manifest) == len(examples) == len(list(TWIN.iterdir())) - 2  # + manifest.csv, NOTICE.md
    photometrics, modalities = set(), set()
    for entry, (_, row) in zip(manifest, examples):
        standard = image_io.load_standard_image(TWIN / entry["image"])
        facts = standard.dicom
        assert facts is not None and dicom.screen(facts) is None, entry["image"]
        gray = preprocessing.decode_image(standard.encoded).numpy()[..., 0]
        source = tool._gray(SAMPLE / "images" / row["filename"])
        assert np.abs(gray.astype(int) - source).max() <= 1, entry["image"]
        header = pydicom.dcmread(TWIN / entry["image"], stop_before_pixels=True)
        assert header.PatientID == entry["patient_id"] and header.PatientID.startswith("SYNTH-")
        assert entry["died"] == ("" if row["mortality_observed"] == -1 else str(row["mortality_observed"]))
        assert facts.patient_sex == (entry["sex"] or None) and facts.view_position == entry["view"].split()[0]
        photometrics.add(facts.photometric)
        modalities.add(facts.modality)
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"} and modalities == {"CR", "DX"}


def test_the_folder_is_small_and_partly_named_by_uid(manifest):
    assert sum(p.stat().st_size for p in TWIN.iterdir()) < 3_000_000
    unsuffixed = [e["image"] for e in manifest if not e["image"].endswith(".dcm")]
    assert unsuffixed and all(pydicom.dcmread(TWIN / n).SOPInstanceUID == n for n in unsuffixed)
    assert list(manifest[0]) == ["image", "patient_id", "died", "age", "sex", "view", "offset_days", "went_icu",
                                 "needed_supplemental_O2", "intubation_present", "extubated"]
