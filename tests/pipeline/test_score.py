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
    assert list(output.parent.iterdir()) == [output]  # no temporary file left


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
])
def test_bad_flags_exit_2_with_one_line(saved_model, tmp_path, args, message):
    args = [a.format(model=saved_model, tmp=tmp_path) for a in args]
    result = subprocess.run([sys.executable, "-m", "pipeline.score", *args, f"--output={tmp_path}/o.csv"],
                            capture_output=True, text=True, cwd=configs.REPO_ROOT)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "o.csv").exists()
