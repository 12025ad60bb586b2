import os
import stat

import pytest

from common import pseudonym
from common.errors import PipelineError


def test_pseudonyms_are_stable_for_one_key_and_differ_with_another():
    one, other = b"k" * 32, b"o" * 32
    assert pseudonym.patient_pseudonym(one, "PHI-1") == pseudonym.patient_pseudonym(one, "PHI-1")
    assert pseudonym.patient_pseudonym(one, "PHI-1") != pseudonym.patient_pseudonym(other, "PHI-1")
    assert pseudonym.patient_pseudonym(one, "PHI-1") != pseudonym.patient_pseudonym(one, "PHI-2")
    assert pseudonym.image_pseudonym(one, "a/1.2.3.dcm", ".dcm").endswith(".dcm")
    assert pseudonym.key_id(one) != pseudonym.key_id(other) and one.hex() not in pseudonym.key_id(one)


def test_a_key_is_created_once_private_and_announced(tmp_path):
    path, notes = tmp_path / "home" / ".covid_cxr" / "pseudonym.key", []
    key = pseudonym.load_or_create_key(path, tmp_path / "out", notes.append)
    assert len(notes) == 1 and str(path) in notes[0]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(key) == pseudonym.KEY_BYTES
    assert pseudonym.load_or_create_key(path, tmp_path / "out", notes.append) == key and len(notes) == 1


def test_a_key_inside_the_output_folder_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="inside --output_dir"):
        pseudonym.load_or_create_key(tmp_path / "out" / "k.key", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_key_is_refused_where_it_must_exist(tmp_path):
    with pytest.raises(PipelineError, match="no key there"):
        pseudonym.load_key(tmp_path / "lost.key")


@pytest.mark.parametrize("name,identifying", [
    ("1.2.840.113619.2.55.3.1.dcm", True), ("1.2.840.113619", True), ("1.2.3.png", True),
    ("A1234567.dcm", True), ("scan-20200315.png", True),  # an accession number, a date
    ("chest-1.png", False), ("12.jpg", False), ("ward7-12345.png", False)])
def test_identifying_file_names_are_recognised(name, identifying):
    assert pseudonym.is_identifying_name(name) == identifying


def test_two_first_runs_at_once_agree_on_one_key(tmp_path, monkeypatch):
    """The second run saw no key, but the first wrote its key before the second could: the first's stays."""
    path = tmp_path / "pseudonym.key"
    first = pseudonym.load_or_create_key(path, tmp_path / "out", lambda note: None)
    looks = []  # the second run's first look finds no key; every later look sees the file

    def is_file(self):
        looks.append(self)
        return os.path.isfile(self) and (self != path or looks.count(path) > 1)

    monkeypatch.setattr(type(path), "is_file", is_file)
    notes = []
    assert pseudonym.load_or_create_key(path, tmp_path / "out", notes.append) == first and notes == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pseudonym.key"]  # no temporary file left
