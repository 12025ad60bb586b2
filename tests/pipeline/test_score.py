"""Batch scoring: one row per file, named errors, the SavedModel's probabilities, exit codes."""

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver
from PIL import Image

from components import configs
from pipeline import score
from serving import signature
from tests.serving import helpers
from images import image_io
from tests.conftest import encode


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "saved_model"
    signature.write_saved_model([helpers.tiny_classifier(0), helpers.tiny_classifier(1)], path)
    return path


@pytest.fixture
def images_dir(tmp_path):
    """The embedded sample's images plus files that cannot or can only with conversion be read."""
    folder = tmp_path / "images"
    shutil.copytree(helpers.SAMPLE_IMAGES, folder)
    good = (folder / "00870a9c.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "text.jpg").write_text("this is a text file named .jpg\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "gray16.png").write_bytes(helpers.sixteen_bit_png())
    cmyk = io.BytesIO()
    Image.open(io.BytesIO(good)).convert("CMYK").save(cmyk, format="JPEG")
    (folder / "cmyk.jpg").write_bytes(cmyk.getvalue())
    (folder / "README.txt").write_text("not an image name: skipped")
    return folder


BAD = {"truncated.jpg": "truncated_or_corrupt", "text.jpg": "not_an_image", "empty.png": "empty_file"}


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _served(saved_model_dir, encoded):
    function = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    return function(image_bytes=tf.constant(encoded))["probability_of_death"].numpy()


def test_a_folder_is_scored_one_row_per_file_with_named_errors(saved_model, images_dir, tmp_path):
    entries = score.list_images(str(images_dir))
    output = tmp_path / "out" / "scores.csv"
    counts = score.score(entries, saved_model, output, batch_size=8, progress=False)
    rows = _rows(output)
    names = sorted(p.name for p in images_dir.iterdir() if p.suffix != ".txt")
    assert sorted(r["filename"] for r in rows) == names and len(rows) == len(names) == 43 + 5
    assert counts["errors"] == len(BAD) and counts["scored"] == len(names) - len(BAD)
    assert counts["images_per_second"] > 0
    by_name = {r["filename"]: r for r in rows}
    for name, reason in BAD.items():
        assert by_name[name]["error"].startswith(reason) and by_name[name]["probability_of_death"] == ""
    good = sorted(n for n in names if n not in BAD)
    expected = _served(saved_model, [image_io.load_standard_image(images_dir / n).encoded for n in good])
    got = np.array([float(by_name[n]["probability_of_death"]) for n in good])
    assert np.all(np.isfinite(got)) and np.allclose(got, expected, atol=1e-6)
    assert [int(by_name[n]["class"]) for n in good] == [int(p > 0.5) for p in expected]
    assert sorted(output.parent.iterdir()) == [output, score.record_path(output)]  # no partial or temporary file


def test_a_csv_names_files_and_bad_rows_are_named_too(saved_model, images_dir, tmp_path):
    table = tmp_path / "metadata.csv"
    table.write_text("patientid,filename\n1,00870a9c.jpg\n2,missing.jpg\n3,../escape.jpg\n4,text.jpg\n")
    entries = score.list_csv(table, images_dir, "filename")
    score.score(entries, saved_model, tmp_path / "scores.csv", progress=False)
    rows = _rows(tmp_path / "scores.csv")
    assert [r["filename"] for r in rows] == ["00870a9c.jpg", "missing.jpg", "../escape.jpg", "text.jpg"]
    assert [r["error"].split(":")[0] for r in rows] == ["", "missing_file", "path_escape", "not_an_image"]
    with pytest.raises(score.ScoreError, match="no 'file' column"):
        score.list_csv(table, images_dir, "file")


def test_the_model_flag_accepts_every_layout(saved_model, tmp_path):
    assert score.resolve_model(saved_model) == saved_model
    serving = tmp_path / "serving" / "m"
    for version in (1, 2):
        shutil.copytree(saved_model, serving / str(version))
    (serving / "3").mkdir()  # half-made by hand: no saved_model.pb, not what TF Serving would load
    assert score.resolve_model(serving) == serving / "2"
    artifact = tmp_path / "runs" / "export" / "abc"
    shutil.copytree(saved_model, artifact / "saved_model")
    (artifact / "export.json").write_text("{}")
    assert score.resolve_model(artifact) == artifact / "saved_model"
    (tmp_path / "runs" / "latest_run.json").write_text(json.dumps({"artifacts": {"export": str(artifact)}}))
    assert score.resolve_model(tmp_path / "runs") == artifact / "saved_model"
    with pytest.raises(score.ScoreError, match="holds no SavedModel"):
        score.resolve_model(tmp_path)


def test_main_scores_and_exits_zero(saved_model, images_dir, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    with flagsaver.flagsaver():
        score.FLAGS(["score", f"--model={saved_model}", f"--images={images_dir}/*.jpg", f"--output={output}"])
        assert score.main(["score"]) == 0
    assert "images/s" in capsys.readouterr().out
    assert len(_rows(output)) == len(list(images_dir.glob("*.jpg")))


@pytest.mark.parametrize("args,message", [
    (["--model=/does/not/exist", "--images=."], "error: --model /does/not/exist is not a folder"),
    (["--model={model}", "--images={tmp}/*.jpg"], "error: no images matched"),
    (["--model={model}"], "error: give exactly one of --images and --csv"),
    (["--model={model}", "--images={model}/*", "--shard=2/2"], "error: --shard '2/2' is not i/n"),
])
def test_bad_flags_exit_2_with_one_line(saved_model, tmp_path, args, message):
    args = [a.format(model=saved_model, tmp=tmp_path) for a in args]
    result = subprocess.run([sys.executable, "-m", "pipeline.score", *args, f"--output={tmp_path}/o.csv"],
                            capture_output=True, text=True, cwd=configs.REPO_ROOT)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "o.csv").exists()


def _killed_after(monkeypatch, calls):
    """score.load_signature whose function dies on call `calls + 1`, as a kill between batches would."""
    real = score.load_signature

    def load(saved_model_dir):
        function, made = real(saved_model_dir), []

        def dying(**kwargs):
            if len(made) == calls:
                raise KeyboardInterrupt("killed")
            made.append(1)
            return function(**kwargs)
        return dying
    monkeypatch.setattr(score, "load_signature", load)


def test_a_killed_run_resumes_after_its_last_whole_batch(saved_model, images_dir, tmp_path, monkeypatch):
    entries = score.list_images(str(images_dir))
    unbroken = tmp_path / "unbroken.csv"
    score.score(entries, saved_model, unbroken, batch_size=8, progress=False)

    output = tmp_path / "scores.csv"
    with monkeypatch.context() as patch:
        _killed_after(patch, calls=2)
        with pytest.raises(KeyboardInterrupt):
            score.score(entries, saved_model, output, batch_size=8, progress=False)
    assert not output.exists() and json.loads(score.record_path(output).read_text())["rows"] == 16
    with open(score.partial_path(output), "a") as handle:
        handle.write("00870a9c.jpg,0.12")  # a row the kill cut in half
    counts = score.score(entries, saved_model, output, batch_size=8, progress=False)
    assert counts["resumed"] == 16 and counts["scored"] + counts["errors"] == len(entries) - 16
    assert output.read_bytes() == unbroken.read_bytes() and not score.partial_path(output).exists()

    again = score.score(entries, saved_model, output, batch_size=8, progress=False)  # complete: nothing to do
    assert again["resumed"] == len(entries) and again["scored"] == again["errors"] == 0
    assert output.read_bytes() == unbroken.read_bytes()


def test_an_output_of_another_model_or_other_inputs_is_refused(saved_model, images_dir, tmp_path):
    entries = score.list_images(str(images_dir))[:5]
    output = tmp_path / "scores.csv"
    score.score(entries, saved_model, output, progress=False)
    other = tmp_path / "other_model"
    signature.write_saved_model([helpers.tiny_classifier(2)], other)
    with pytest.raises(score.ScoreError, match="was made by another model"):
        score.score(entries, other, output, progress=False)
    with pytest.raises(score.ScoreError, match=r"was made from other inputs \(5 files.*not these 4"):
        score.score(entries[:4], saved_model, output, progress=False)
    score.record_path(output).unlink()
    with pytest.raises(score.ScoreError, match="exists without its record"):
        score.score(entries, saved_model, output, progress=False)


def test_shards_concatenated_in_order_are_the_unsharded_output(saved_model, images_dir, tmp_path):
    whole = tmp_path / "scores.csv"
    with flagsaver.flagsaver():
        score.FLAGS(["score", f"--model={saved_model}", f"--images={images_dir}", f"--output={whole}",
                     "--images_per_batch=8"])
        assert score.main(["score"]) == 0
        for index in range(3):
            score.FLAGS(["score", f"--model={saved_model}", f"--images={images_dir}", f"--output={whole}",
                         "--images_per_batch=8", f"--shard={index}/3"])
            assert score.main(["score"]) == 0
    shards = [tmp_path / f"scores-{index:05d}-of-00003.csv" for index in range(3)]
    rows = [_rows(path) for path in shards]
    assert sorted(len(r) for r in rows) == [16, 16, 16] and sum(rows, []) == _rows(whole)
    with pytest.raises(score.ScoreError, match="not i/n"):
        score.parse_shard("3/3")


def test_a_dicom_scores_as_the_png_of_its_pixels(saved_model, tmp_path):
    """DICOM files (found by content, also without a suffix) are rendered in the readers and served as PNG."""
    from tests.images import dicom_files

    folder = tmp_path / "export"
    folder.mkdir()
    gray = dicom_files.sample_gray(side=96)
    Image.fromarray(gray).save(folder / "same.png")
    monochrome1 = dicom_files.dataset(255 - gray, "MONOCHROME1", WindowCenter=128, WindowWidth=256)
    dicom_files.write(monochrome1, folder / "1.2.826.0.1.3680043.8.498.1", dicom_files.RLELossless)
    dicom_files.write(dicom_files.dataset(gray, WindowCenter=128, WindowWidth=256), folder / "same.dcm")
    (folder / "notes").write_text("not an image and not DICOM: not listed\n")
    entries = score.list_images(str(folder))
    assert [name for name, _ in entries] == ["1.2.826.0.1.3680043.8.498.1", "same.dcm", "same.png"]
    score.score(entries, saved_model, tmp_path / "folder.csv", progress=False)
    table = tmp_path / "list.csv"
    table.write_text("filename\nsame.dcm\n1.2.826.0.1.3680043.8.498.1\n")
    score.score(score.list_csv(table, folder, "filename"), saved_model, tmp_path / "csv.csv", progress=False)
    rows = _rows(tmp_path / "folder.csv") + _rows(tmp_path / "csv.csv")
    assert len(rows) == 5 and not any(r["error"] for r in rows)
    assert len({r["probability_of_death"] for r in rows}) == 1
    png, not_inverted = (encode(Image.fromarray(pixels), "PNG") for pixels in (gray, 255 - gray))
    served_png, served_not_inverted = _served(saved_model, [png, not_inverted])
    assert float(rows[0]["probability_of_death"]) == pytest.approx(served_png, abs=1e-6)
    assert abs(served_png - served_not_inverted) > 1e-4  # the model tells the inversion apart
