import csv
import os
import subprocess
import sys
import types

import pytest
from PIL import Image

from components import ingest
import sources
from sources import upstream
from components import configs
from tests.conftest import HEADER_2020, encode, write_metadata, xray_like, xray_row

FRONTAL = configs.FRONTAL_VIEWS


def _reasons(result):
    return {d["filename"]: d["reason"] for d in result["dropped"]}


@pytest.fixture(scope="module")
def mirror_ingested(mirror_dir):
    """The mirror ingested once (every image checked: the slow part) for the tests that read its result."""
    return ingest.ingest(mirror_dir, FRONTAL)


def test_counts_on_the_2020_mirror(mirror_ingested):
    result = mirror_ingested
    counts = result["counts"]
    assert (counts["schema"], counts["rows"], counts["covid_xray"], counts["frontal"]) == ("2020", 751, 458, 434)
    assert counts["frontal_patients"] == 262
    assert counts["labelled"] == {"count": 157, "survived": 125, "died": 32, "patients": 78}
    missing = sorted(d["filename"] for d in result["dropped"] if d["reason"] == "missing_file")
    assert missing == sorted([
        "2C10A413-AABE-4807-8CCE-6A2025594067.jpeg", "7E335538-2F86-424E-A0AB-6397783A38D0.jpeg",
        "E1724330-1866-4581-8CD8-CEC9B8AFEDDE.jpeg", "case_71_figura1.png", "covid-19-caso-86-RX-Torace-2.jpg",
        "covid-19-pneumonia-14-PA.png", "covid-19-pneumonia-24-day6.jpg",
    ])
    assert counts["usable"] == 427 and counts["rejected_images"] == 7


def _to_2021_finding(finding: str) -> str:
    if finding.startswith("COVID-19"):
        return "Pneumonia/Viral/COVID-19" + ("/ARDS" if "ARDS" in finding else "")
    return {"todo": "todo", "No Finding": "No Finding"}.get(finding, f"Pneumonia/Bacterial/{finding}")


def test_same_counts_from_the_2021_schema(mirror_dir, mirror_ingested, tmp_path):
    with open(mirror_dir / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    header = [c for c in HEADER_2020 if c]
    header.insert(header.index("finding") + 1, "RT_PCR_positive")
    rewritten = [{**{k: v for k, v in row.items() if k}, "finding": _to_2021_finding(row["finding"]),
                  "RT_PCR_positive": "Y" if row["finding"].startswith("COVID") else ""} for row in rows]
    data = tmp_path / "v2021"
    write_metadata(data, rewritten, header=header + [""])
    (data / "images").rmdir()
    os.symlink(mirror_dir / "images", data / "images")
    assert (data / "metadata.csv").read_text().splitlines()[0].endswith("other_notes,")
    expected = mirror_ingested["counts"]
    counts = ingest.ingest(data, FRONTAL)["counts"]
    assert counts["schema"] == "2021"
    assert {**counts, "schema": None} == {**expected, "schema": None}


@pytest.mark.parametrize("value,label", [("Y", 0), ("y", 0), (" N ", 1), ("n", 1), ("?", -1), ("", -1)])
def test_survival_labels(value, label):
    assert upstream.mortality_from_survival(value) == label


def test_unrecognised_survival_is_unknown_with_a_warning(tmp_path):
    data = tmp_path / "d"
    write_metadata(data, [xray_row("a.png", survival="maybe")])
    (data / "images" / "a.png").write_bytes(encode(Image.fromarray(xray_like()), "PNG"))
    result = ingest.ingest(data, FRONTAL)
    assert result["examples"][0][1]["mortality_observed"] == -1
    assert "line 2" in result["warnings"][0] and "maybe" in result["warnings"][0]


def test_filters_keep_only_frontal_covid_xrays(tmp_path):
    data = tmp_path / "d"
    rows = [
        xray_row("pa.png"), xray_row("supine.png", view="AP Supine"), xray_row("erect.png", view="AP Erect"),
        xray_row("semi.png", view="AP semi erect"), xray_row("lat.png", view="L"),
        xray_row("ct.png", modality="CT", view="Axial"), xray_row("strep.png", finding="Streptococcus"),
    ]
    write_metadata(data, rows)
    for row in rows:
        (data / "images" / row["filename"]).write_bytes(encode(Image.fromarray(xray_like()), "PNG"))
    result = ingest.ingest(data, FRONTAL)
    assert sorted(row["filename"] for _, row in result["examples"]) == ["erect.png", "pa.png", "semi.png", "supine.png"]
    assert _reasons(result) == {"lat.png": "not_frontal", "ct.png": "not_xray", "strep.png": "not_covid"}


def test_max_offset_days_keeps_early_xrays_and_names_the_rest(tmp_path):
    data = tmp_path / "d"
    rows = [xray_row("day3.png", offset="3"), xray_row("day7.png", offset="7"), xray_row("before.png", offset="-2"),
            xray_row("day8.png", offset="8"), xray_row("unknown.png", offset=""), xray_row("text.png", offset="n/a")]
    write_metadata(data, rows)
    for row in rows:
        (data / "images" / row["filename"]).write_bytes(encode(Image.fromarray(xray_like()), "PNG"))
    everything = ingest.ingest(data, FRONTAL)
    assert everything["counts"]["usable"] == 6 and everything["counts"]["within_offset"] == 6
    result = ingest.ingest(data, FRONTAL, max_offset_days=7)
    assert sorted(row["filename"] for _, row in result["examples"]) == ["before.png", "day3.png", "day7.png"]
    dropped = {d["filename"]: d for d in result["dropped"]}
    assert {name: d["reason"] for name, d in dropped.items()} == dict.fromkeys(
        ["day8.png", "unknown.png", "text.png"], "offset_out_of_range")
    assert dropped["day8.png"]["line"] == 5 and "'8'" in dropped["day8.png"]["detail"]
    counts = result["counts"]
    assert (counts["frontal"], counts["within_offset"], counts["usable"], counts["rejected_images"]) == (6, 3, 3, 0)
    assert "; 3 of the 6 frontal taken at most 7 days in;" in ingest.summary_line(counts)


def test_every_bad_image_is_named_and_the_rest_is_kept(tmp_path):
    data = tmp_path / "d"
    images = data / "images"
    rows = [
        xray_row("good.jpg"), xray_row("missing.jpg"), xray_row("empty.jpg"), xray_row("text.png"),
        xray_row("../escape.jpg"), xray_row("dup.png", patientid="2", survival="Y"),
        xray_row("dup.png", patientid="2", survival="N"), xray_row("same.png", survival="Y"),
        xray_row("same.png", survival="Y"), xray_row("rgba.png"), xray_row("link.png"),
    ]
    write_metadata(data, rows)
    picture = Image.fromarray(xray_like())
    (images / "good.jpg").write_bytes(encode(picture, "JPEG"))
    (images / "empty.jpg").write_bytes(b"")
    (images / "text.png").write_text("hello")
    (data / "escape.jpg").write_bytes(encode(picture, "JPEG"))
    (images / "dup.png").write_bytes(encode(picture, "PNG"))
    (images / "same.png").write_bytes(encode(picture, "PNG"))
    (images / "rgba.png").write_bytes(encode(picture.convert("RGBA"), "PNG"))
    (tmp_path / "outside.png").write_bytes(encode(picture, "PNG"))
    os.symlink(tmp_path / "outside.png", images / "link.png")

    result = ingest.ingest(data, FRONTAL)
    rejected = [(d["line"], d["filename"], d["reason"]) for d in result["dropped"]]
    assert (3, "missing.jpg", "missing_file") in rejected
    assert (4, "empty.jpg", "empty_file") in rejected
    assert (5, "text.png", "not_an_image") in rejected
    assert (6, "../escape.jpg", "path_escape") in rejected
    assert (7, "dup.png", "duplicate_conflicting_labels") in rejected
    assert (8, "dup.png", "duplicate_conflicting_labels") in rejected
    assert (10, "same.png", "duplicate_filename") in rejected
    assert (12, "link.png", "path_escape") in rejected
    usable = {row["filename"]: row for _, row in result["examples"]}
    assert sorted(usable) == ["good.jpg", "rgba.png", "same.png"]
    assert usable["rgba.png"]["converted"] == 1 and usable["good.jpg"]["converted"] == 0
    assert result["counts"]["usable"] == 3


def _write_raw(tmp_path, text):
    data = tmp_path / "raw"
    (data / "images").mkdir(parents=True)
    (data / "metadata.csv").write_text(text)
    return data


def test_unterminated_quote_names_its_line(tmp_path):
    header = ",".join(HEADER_2020)
    good = ",".join(xray_row("a.png").values())
    broken = good.replace(",COVID-19,", ',"COVID-19,', 1)
    data = _write_raw(tmp_path, f"{header}\n{good}\n{good}\n{broken}\n{good}\n")
    with pytest.raises(upstream.MetadataError, match="line 4"):
        upstream.read_metadata(data / "metadata.csv")


def test_missing_column_is_named(tmp_path):
    header = [c for c in HEADER_2020 if c != "survival"]
    data = tmp_path / "d"
    write_metadata(data, [{k: v for k, v in xray_row("a.png").items() if k != "survival"}], header=header)
    with pytest.raises(upstream.MetadataError, match="missing required column.*survival"):
        upstream.read_metadata(data / "metadata.csv")


def test_wrong_delimiter_is_named(tmp_path):
    header = ";".join(HEADER_2020)
    data = _write_raw(tmp_path, header + "\n" + ";".join(xray_row("a.png").values()) + "\n")
    with pytest.raises(upstream.MetadataError, match="';'"):
        upstream.read_metadata(data / "metadata.csv")


def test_extra_fields_name_the_line(tmp_path):
    header = ",".join(HEADER_2020)
    good = ",".join(xray_row("a.png").values())
    data = _write_raw(tmp_path, f"{header}\n{good}\n{good},surplus,values\n")
    with pytest.raises(upstream.MetadataError, match="line 3"):
        upstream.read_metadata(data / "metadata.csv")


def test_the_cli_prints_one_clear_error_without_traceback(tmp_path):
    data = _write_raw(tmp_path, ";".join(HEADER_2020) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.run", f"--data_dir={data}", f"--output_dir={tmp_path / 'out'}",
         "--stop_after=ingest"],
        capture_output=True, text=True, cwd=configs.REPO_ROOT, timeout=900,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "';'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list((tmp_path / "out").glob("ingest/*"))


def test_upstream_rows_carry_the_site_of_their_location(tmp_path):
    data = tmp_path / "d"
    rows = [xray_row("a.png", location="Hospital X, Milan, Italy"), xray_row("b.png", location="Wuhan,  China "),
            xray_row("c.png", location="")]
    write_metadata(data, rows)
    for row in rows:
        (data / "images" / row["filename"]).write_bytes(encode(Image.fromarray(xray_like()), "PNG"))
    result = ingest.ingest(data, FRONTAL)
    assert "site" in result["columns"]
    sites = {row["filename"]: row["site"] for row in ingest.example_rows(result["examples"], result["columns"])}
    assert sites == {"a.png": "Italy", "b.png": "China", "c.png": "unknown"}


def test_several_workers_give_what_one_gives_in_the_same_order(tmp_path, monkeypatch):
    """The image checks run in worker processes: examples and rejections must not depend on how many."""
    from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1

    from tests.images import dicom_files
    from tests.sources.manifest_data import write_manifest

    data = tmp_path / "hospital"
    data.mkdir()
    stored = dicom_files.sample_gray().astype("uint16") * 16
    dicom_files.write(dicom_files.dataset(stored, bits_stored=12), data / "j2k.dcm", JPEG2000Lossless)
    dicom_files.write(dicom_files.dataset(stored, bits_stored=12), data / "ljpeg.dcm", JPEGLosslessSV1)
    dicom_files.write(dicom_files.dataset(stored, bits_stored=12, ViewPosition="LL"), data / "lateral.dcm")
    (data / "broken.dcm").write_bytes((data / "j2k.dcm").read_bytes()[:-4000])
    (data / "text.png").write_text("not an image")
    for i in range(4):
        Image.fromarray(xray_like(seed=i)).save(data / f"{i}.png")
    names = ["0.png", "j2k.dcm", "broken.dcm", "1.png", "lateral.dcm", "text.png", "ljpeg.dcm", "missing.png",
             "2.png", "3.png"]
    write_manifest(data, [{"image": name, "patient_id": f"P{i}", "died": str(i % 2)} for i, name in enumerate(names)])
    source = sources.open_source(data, lambda: b"k" * 32)

    one = ingest.ingest(source, FRONTAL, workers=1)
    monkeypatch.setattr(ingest, "POOL_AFTER_SECONDS", 0.0)  # every image in the pool
    pooled = ingest.ingest(source, FRONTAL, workers=3)
    assert pooled["examples"] == one["examples"] and pooled["dropped"] == one["dropped"]
    clock = iter(range(100))  # one second a reading: the first image here, then the pool (the rest would take longer)
    monkeypatch.setattr(ingest, "POOL_AFTER_SECONDS", 4.0)
    monkeypatch.setattr(ingest, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    mixed = ingest.ingest(source, FRONTAL, workers=2)
    assert mixed["examples"] == one["examples"] and mixed["dropped"] == one["dropped"]
    monkeypatch.undo()
    original_pool, in_pool = ingest._checked_in_pool, []

    def counting_pool(source, rows, *rest):
        in_pool.extend(rows)
        yield from original_pool(source, rows, *rest)

    monkeypatch.setattr(ingest, "_checked_in_pool", counting_pool)
    monkeypatch.setattr(ingest, "_pool_pays", lambda seconds, checked_bytes, left_bytes: checked_bytes > 0)
    paced = ingest.ingest(source, FRONTAL, workers=2)  # the pool from the second image: the first set the pace
    assert paced["examples"] == one["examples"] and paced["dropped"] == one["dropped"]
    assert [row["filename"] for _, row in in_pool] == names[1:]
    assert [row["filename"] for _, row in one["examples"]] == ["0.png", "j2k.dcm", "1.png", "ljpeg.dcm", "2.png",
                                                                "3.png"]
    assert [(d["filename"], d["reason"]) for d in one["dropped"]] == [
        ("broken.dcm", "dicom_truncated_pixel_data"), ("lateral.dcm", "dicom_lateral_view"),
        ("text.png", "not_an_image"), ("missing.png", "missing_file")]


def test_the_pool_starts_once_the_images_left_would_take_a_pools_start(monkeypatch):
    monkeypatch.setattr(ingest, "POOL_AFTER_SECONDS", 5.0)
    assert not ingest._pool_pays(0.0, 0, 10**9)  # no pace known yet
    assert ingest._pool_pays(5.0, 0, 0)  # checking here has taken that long
    assert ingest._pool_pays(0.5, 10**6, 10**7)  # 1 MB in 0.5 s: the 10 MB left would take 5 s
    assert not ingest._pool_pays(0.5, 10**6, 9 * 10**6)
