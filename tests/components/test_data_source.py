import os

import pytest

from common import files
from common.errors import PipelineError
from components import data_source


def _data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "metadata.csv").write_text("patientid,filename\n1,a.png\n")
    for name in ("a.png", "b.png", "c.png"):
        (root / "images" / name).write_bytes(name.encode() * 100)
    return root


@pytest.fixture
def hashed(monkeypatch):
    """The files sha256 actually read, in order."""
    calls = []
    real = files.sha256_file

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(files, "sha256_file", counting)
    return calls


def test_an_unchanged_folder_is_not_hashed_again(tmp_path, hashed):
    root, cache = _data_dir(tmp_path), tmp_path / "out" / "sha256_cache.json"
    first = data_source.import_data_dir(root, cache)
    assert sorted(hashed) == ["a.png", "b.png", "c.png", "metadata.csv"] and cache.is_file()
    hashed.clear()
    again = data_source.import_data_dir(root, cache)
    assert hashed == ["metadata.csv"] and again.fingerprint == first.fingerprint
    assert again.fingerprint == data_source.import_data_dir(root).fingerprint  # same as without a cache


def test_a_replaced_image_is_hashed_again_and_changes_the_fingerprint(tmp_path, hashed):
    root, cache = _data_dir(tmp_path), tmp_path / "sha256_cache.json"
    first = data_source.import_data_dir(root, cache)
    image = root / "images" / "b.png"
    image.write_bytes(b"another picture of the same size!" * 3)
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    hashed.clear()
    second = data_source.import_data_dir(root, cache)
    assert hashed == ["metadata.csv", "b.png"] and second.fingerprint != first.fingerprint


def test_a_damaged_cache_costs_only_a_rehash(tmp_path, hashed):
    root, cache = _data_dir(tmp_path), tmp_path / "sha256_cache.json"
    expected = data_source.import_data_dir(root).fingerprint
    cache.write_text("{not json")
    assert data_source.import_data_dir(root, cache).fingerprint == expected


def test_a_folder_without_metadata_is_refused_by_name(tmp_path):
    with pytest.raises(PipelineError, match="no metadata.csv"):
        data_source.import_data_dir(tmp_path)


def test_a_manifest_fingerprint_covers_every_image_it_names_wherever_it_lies(tmp_path):
    from tests.sources.manifest_data import hospital, identifiers, write_manifest

    rows = hospital(tmp_path / "data", images=3)
    elsewhere = tmp_path / "elsewhere" / "1.2.840.113619.9.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes((tmp_path / "data" / rows[0]["image"]).read_bytes())
    rows[0]["image"] = str(elsewhere)
    write_manifest(tmp_path / "data", rows)
    cache = tmp_path / "out" / "sha256_cache.json"
    key = lambda: b"k" * 32  # noqa: E731
    first = data_source.import_data_dir(tmp_path / "data", cache, key)
    assert first.counts["image_files"] == 3 and first.source.key_id
    elsewhere.write_bytes(elsewhere.read_bytes() + b"\0")
    assert data_source.import_data_dir(tmp_path / "data", cache, key).fingerprint != first.fingerprint
    assert data_source.import_data_dir(tmp_path / "data", cache, lambda: b"o" * 32).fingerprint != first.fingerprint
    cached = cache.read_bytes()
    assert [secret for secret in [*identifiers(rows), b"elsewhere"] if secret in cached] == []
