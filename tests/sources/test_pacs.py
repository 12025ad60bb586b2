"""`python -m pipeline.manifest --dicom_dir`: a manifest from generated DICOM files and a made-up outcomes table."""

import csv

import numpy as np
import pytest

from pipeline import manifest
from sources import pacs
from sources.manifest import ManifestSource
from tests.images import dicom_files

KEY = bytes(range(32))
PIXELS = np.arange(64 * 72, dtype=np.uint16).reshape(72, 64)


def _export(root):
    """Four DICOM images of three patients (one with a birth date instead of an age), a text file and a
    DICOM of a patient with no outcome."""
    export = root / "export"
    (export / "a").mkdir(parents=True)
    patients = [("P1", "ACC1", {"PatientAge": "070Y"}), ("P1", "ACC2", {"PatientAge": "071Y", "ViewPosition": "AP"}),
                ("P2", "ACC3", {"PatientAge": "", "PatientBirthDate": "19500610", "StudyDate": "20200609",
                                "PatientSex": "M"}),
                ("P3", "ACC4", {"PatientAge": "095Y"}), ("P9", "ACC9", {})]
    for i, (patient, accession, elements) in enumerate(patients):
        ds = dicom_files.dataset(PIXELS + i, PatientID=patient, AccessionNumber=accession, **elements)
        dicom_files.write(ds, export / ("a" if i % 2 else "") / f"1.2.3.{i}")
    (export / "notes.txt").write_text("not an image\n")
    return export


def _outcomes(root, key, rows):
    path = root / "outcomes.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([key, "died", "went_icu", "site", "ward"])
        writer.writerows(rows)
    return path


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_patient_id_key_matches_and_names_what_did_not(tmp_path, capsys):
    export = _export(tmp_path)
    outcomes = _outcomes(tmp_path, "PatientID", [["P1", "1", "1", "north", "x"], ["P2", "0", "", "north", ""],
                                                 ["P3", "", "0", "south", ""], ["P4", "1", "", "", ""]])
    output = export / "manifest.csv"
    assert manifest.main(["--dicom_dir", str(export), "--outcomes", str(outcomes), "--output", str(output)]) == 0
    rows = _read(output)
    assert list(rows[0]) == ["image", "patient_id", "died", "age", "sex", "view", "site", "went_icu"]
    by_image = {row["image"]: row for row in rows}
    assert set(by_image) == {"1.2.3.0", "a/1.2.3.1", "1.2.3.2", "a/1.2.3.3"}
    assert by_image["a/1.2.3.1"] == {"image": "a/1.2.3.1", "patient_id": "P1", "died": "1", "age": "71", "sex": "F",
                                     "view": "AP", "site": "north", "went_icu": "1"}
    assert (by_image["1.2.3.2"]["age"], by_image["1.2.3.2"]["sex"]) == ("69", "M")  # from the birth date
    printed = capsys.readouterr().out
    assert "4 images of 3 patients, from 6 files (1 not DICOM images, skipped" in printed
    assert f"1 DICOM file(s) match no row of {outcomes} by PatientID:\n  {export / '1.2.3.4'} (PatientID P9)" \
        in printed
    assert f"{outcomes}: column(s) ignored: ward" in printed
    assert "1 row(s) of" in printed and "line 5 (PatientID P4)" in printed
    source = ManifestSource(export, KEY)  # the manifest reads as the pipeline's input; 95 is written as 90
    assert sorted(row["age"] for _, row in source.rows) == ["69", "70", "71", "90"]


def test_accession_number_key(tmp_path):
    export = _export(tmp_path)
    outcomes = _outcomes(tmp_path, "AccessionNumber", [["ACC2", "1", "", "", ""], ["ACC9", "0", "", "", ""]])
    built = pacs.build(export, outcomes, "AccessionNumber", tmp_path / "elsewhere")  # images outside: absolute
    assert [(row["image"], row["patient_id"], row["died"]) for row in built.rows] == [
        (str(export / "1.2.3.4"), "P9", "0"), (str(export / "a" / "1.2.3.1"), "P1", "1")]
    assert sorted(h.accession_number for h in built.unmatched_files) == ["ACC1", "ACC3", "ACC4"]
    assert built.unmatched_lines == []


def test_an_existing_output_is_kept_and_bad_input_writes_nothing(tmp_path, capsys):
    export = _export(tmp_path)
    output = tmp_path / "manifest.csv"
    output.write_text("kept\n")
    good = _outcomes(tmp_path, "PatientID", [["P1", "1", "", "", ""]])
    args = ["--dicom_dir", str(export), "--outcomes", str(good), "--output", str(output)]
    assert manifest.main(args) == 2 and output.read_text() == "kept\n"
    assert "exists already (--overwrite replaces it)" in capsys.readouterr().err
    assert manifest.main([*args, "--overwrite"]) == 0 and len(_read(output)) == 2
    bad = _outcomes(tmp_path, "PatientID", [["P1", "1", "", "", ""], ["P2", "yes", "", "", ""]])
    fresh = tmp_path / "new.csv"
    assert manifest.main(["--dicom_dir", str(export), "--outcomes", str(bad), "--output", str(fresh)]) == 2
    assert f"{bad} line 3, column died: 'yes' is not 1, 0 or blank" in capsys.readouterr().err
    nobody = _outcomes(tmp_path, "PatientID", [["P7", "1", "", "", ""]])
    assert manifest.main(["--dicom_dir", str(export), "--outcomes", str(nobody), "--output", str(fresh)]) == 2
    assert "no DICOM file matched" in capsys.readouterr().err and not fresh.exists()


def test_repeated_keys_are_refused(tmp_path):
    outcomes = _outcomes(tmp_path, "PatientID", [["P1", "1", "", "", ""], ["P1", "0", "", "", ""]])
    with pytest.raises(pacs.PacsError, match="line 3, column PatientID: the same PatientID as line 2"):
        pacs.build(_export(tmp_path), outcomes, "PatientID", tmp_path)


@pytest.mark.parametrize("age, birth, study, expected", [
    ("018M", "", "", "1.5"), ("", "19600301", "20200229", "59"), ("", "19600301", "20200301", "60"),
    ("", "1960", "20200301", ""), ("", "", "", "")])
def test_age_from_the_header(age, birth, study, expected):
    assert pacs.age_from_header(age, birth, study) == expected
