"""The manifest source (sources/manifest.py): checks, pseudonyms, DICOM headers, lookup."""

import pytest

import sources
from common import pseudonym
from common.errors import PipelineError
from images import image_io
from sources.manifest import ManifestError, ManifestSource
from tests.sources.manifest_data import SENTINEL, hospital, write_manifest

KEY = b"k" * 32


def _source(data_dir, key=KEY):
    return sources.open_source(data_dir, lambda: key)


def test_a_folder_with_a_manifest_is_read_as_one(tmp_path):
    hospital(tmp_path, images=4)
    source = _source(tmp_path)
    assert isinstance(source, ManifestSource)
    assert source.key_id == pseudonym.key_id(KEY)
    with pytest.raises(PipelineError, match="pseudonym key"):
        sources.open_source(tmp_path)


def test_rows_are_in_the_study_words_with_pseudonyms(tmp_path):
    rows = hospital(tmp_path, images=6)
    selection = _source(tmp_path).select(["PA", "AP"])
    first = selection.rows[0][1]
    assert first["patientid"] == pseudonym.patient_pseudonym(KEY, rows[0]["patient_id"])
    assert first["filename"].startswith("img-") and first["filename"].endswith(".png")
    assert (first["survival"], first["mortality_observed"], first["went_icu"], first["needed_supplemental_O2"]) == (
        "N", 1, "N", "Y")
    assert first["site"] == "ward-7" and first["offset"] == "0"
    assert selection.warnings == ["manifest.csv: column(s) ignored: referring_doctor"]
    assert selection.counts == {"schema": "manifest", "rows": 6, "covid_xray": 6}


def test_ages_over_89_are_written_as_90_and_plain_names_stay(tmp_path):
    hospital(tmp_path, images=1)
    (tmp_path / "chest.png").write_bytes((next((tmp_path / SENTINEL.format(0)).iterdir())).read_bytes())
    write_manifest(tmp_path, [{"image": "chest.png", "patient_id": "A", "died": "0", "age": "97", "view": "LL"},
                              {"image": str(tmp_path / "chest.png") + "x", "patient_id": "B", "died": "", "age": "89"}])
    selection = _source(tmp_path).select(["PA"])
    assert [row["age"] for _, row in selection.rows] == ["89"]
    assert [(d["filename"], d["reason"]) for d in selection.dropped] == [("chest.png", "not_frontal")]
    assert _source(tmp_path).rows[0][1]["age"] == "90"


def test_names_that_identify_or_repeat_become_pseudonyms(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    write_manifest(tmp_path, [{"image": "a/x.png", "patient_id": "P1", "died": "1"},
                              {"image": "b/x.png", "patient_id": "P2", "died": "1"},
                              {"image": "a/P3-chest.png", "patient_id": "P3", "died": "1"},
                              {"image": "a/chest.png", "patient_id": "P4", "died": "1"}])
    names = [row["filename"] for _, row in _source(tmp_path).rows]
    assert [name.startswith("img-") for name in names] == [True, True, True, False]
    assert len(set(names)) == 4


@pytest.mark.parametrize("change,message", [
    ({"died": "yes"}, "line 3, column died: 'yes' is not 1, 0 or blank"),
    ({"sex": "male"}, "line 3, column sex: 'male' is not M, F or blank"),
    ({"age": "sixty"}, "line 3, column age: 'sixty' is not a number"),
    ({"age": "-3"}, "line 3, column age: '-3' is not an age in years"),
    ({"offset_days": "3d"}, "line 3, column offset_days: '3d' is not a number"),
    ({"went_icu": "Y"}, "line 3, column went_icu: 'Y' is not 1, 0 or blank"),
    ({"patient_id": " "}, "line 3, column patient_id: is blank"),
])
def test_a_bad_value_names_its_line_and_column(tmp_path, change, message):
    rows = hospital(tmp_path, images=3)
    rows[1].update(change)
    write_manifest(tmp_path, rows)
    with pytest.raises(ManifestError) as error:
        _source(tmp_path)
    assert str(error.value) == f"{tmp_path / 'manifest.csv'} {message}"
    assert "PHI-SENTINEL" not in str(error.value)


def test_a_duplicate_image_or_a_missing_column_is_refused(tmp_path):
    rows = hospital(tmp_path, images=3)
    write_manifest(tmp_path, [*rows, {**rows[0], "image": "./" + rows[0]["image"]}])
    with pytest.raises(ManifestError, match="line 5, column image: the same image as line 2$"):
        _source(tmp_path)
    write_manifest(tmp_path, [{k: v for k, v in row.items() if k != "died"} for row in rows])
    with pytest.raises(ManifestError, match="line 1: missing required column.*died"):
        _source(tmp_path)


def test_a_missing_image_is_named_by_its_pseudonym_not_its_path(tmp_path):
    rows = hospital(tmp_path, images=2)
    (tmp_path / rows[0]["image"]).unlink()
    source = _source(tmp_path)
    _, row = source.select(["PA"]).rows[0]
    with pytest.raises(image_io.ImageRejected) as rejected:
        source.check_image(row)
    assert rejected.value.reason == "missing_file" and rejected.value.detail == f"{row['filename']} does not exist"


def test_a_blank_view_is_assumed_frontal_and_counted(tmp_path):
    hospital(tmp_path, images=2)
    source = _source(tmp_path)
    checked = [{**row, **source.check_image(row)} for _, row in source.select(["PA"]).rows]
    assert [row["view_assumed"] for row in checked] == [1, 0]
    assert source.image_counts([(2, row) for row in checked])["view_assumed_frontal"] == 1


def test_lookup_maps_pseudonyms_back(tmp_path):
    rows = hospital(tmp_path, images=2)
    source = _source(tmp_path)
    _, row = source.rows[0]
    assert source.lookup([row["patientid"], row["filename"], "pt-unknown"]) == {
        row["patientid"]: rows[0]["patient_id"], row["filename"]: str(tmp_path / rows[0]["image"])}


def test_dicom_header_facts_give_the_view_and_screen_the_image(tmp_path):
    """A blank view comes from the DICOM header's ViewPosition (the manifest's own view wins), and a lateral
    view is screened out by its named reason."""
    from tests.images import dicom_files

    hospital(tmp_path, images=2)
    source = _source(tmp_path)
    (_, blank), (_, given) = source.select(["PA", "AP"]).rows
    for row, view_position in ((blank, "AP"), (given, "AP")):
        ds = dicom_files.dataset(dicom_files.sample_gray(64))
        ds.ViewPosition = view_position
        dicom_files.write(ds, source.image_path(row["filename"]))
    assert (source.check_image(blank)["view"], source.check_image(blank)["view_assumed"]) == ("AP", 0)
    assert source.check_image(given)["view"] == "PA"  # the manifest's view wins
    lateral = dicom_files.dataset(dicom_files.sample_gray(64))
    lateral.ViewPosition = "LL"
    dicom_files.write(lateral, source.image_path(blank["filename"]))
    with pytest.raises(image_io.ImageRejected) as rejected:
        source.check_image(blank)
    assert rejected.value.reason == "dicom_lateral_view" and blank["filename"] in rejected.value.detail
    decubitus = dicom_files.dataset(dicom_files.sample_gray(64))
    decubitus.ViewPosition = "LLD"  # left lateral decubitus: not lateral, not frontal either
    dicom_files.write(decubitus, source.image_path(blank["filename"]))
    with pytest.raises(image_io.ImageRejected) as rejected:
        source.check_image(blank)
    assert rejected.value.reason == "not_frontal" and "'LLD' from its DICOM header" in rejected.value.detail


def test_checking_an_image_before_select_is_refused(tmp_path):
    """The header's view is checked against the views `select` kept, so without them no image is passed."""
    hospital(tmp_path, images=1)
    selected = _source(tmp_path)
    (_, row), = selected.select(["PA", "AP"]).rows
    assert selected.check_image(row)["width"] > 0
    with pytest.raises(PipelineError, match="check_image before select"):
        _source(tmp_path).check_image(row)


def test_blank_age_and_sex_come_from_the_dicom_header_and_burned_in_text_is_flagged(tmp_path):
    """The manifest's own age and sex win; the header fills blanks (over 89 written as 90), counted; a
    BurnedInAnnotation YES is carried per image and named by the image's output name."""
    from tests.images import dicom_files

    rows = hospital(tmp_path, images=2)
    rows[0].update(age="", sex="")
    write_manifest(tmp_path, rows)
    source = _source(tmp_path)
    (_, blank), (_, given) = source.select(["PA", "AP"]).rows
    for row, burned_in in ((blank, "YES"), (given, "NO")):
        ds = dicom_files.dataset(dicom_files.sample_gray(64), PatientAge="093Y", PatientSex="F",
                                 BurnedInAnnotation=burned_in)
        dicom_files.write(ds, source.image_path(row["filename"]))
    checked = [(2, {**row, **source.check_image(row)}) for row in (blank, given)]
    assert [(row["age"], row["sex"], row["burned_in_annotation"]) for _, row in checked] == [
        ("90", "F", 1), (given["age"], given["sex"], 0)]
    counts = source.image_counts(checked)
    assert (counts["age_from_dicom_header"], counts["sex_from_dicom_header"]) == (1, 1)
    assert counts["burned_in_annotation_images"] == [blank["filename"]] and counts["burned_in_annotation"] == 1
    assert counts["sites"] == ["ward-7"]
