"""The app's page through its API (`gradio_client`, as a program would call it), its flags and its privacy rules."""

import functools
import json
import logging
import shutil
import stat
import types
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from pipeline import app
from serving import contract, explain, page, validations
from tests.pipeline import app_fixtures


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return app_fixtures.demo_export(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def site_validation(model, tmp_path_factory, sample_dir):
    """`pipeline.validate`'s folder of the served model (version 1) on the sample, as a site's data team makes it."""
    root = tmp_path_factory.mktemp("site")
    site = shutil.copytree(sample_dir, root / "site")
    done = app_fixtures.validate(model, site, root / "out", "--site=SITE_A")
    assert done.returncode == 0, done.stderr
    return root / "out"


@pytest.fixture(scope="module")
def server(model, site_validation):
    with app_fixtures.launched(model, "127.0.0.1", app_fixtures.free_port(), None, max_upload_mb=1,
                               validations=[str(site_validation)]) as blocks:
        yield blocks


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server.local_url, verbose=False)


def _predict(client, path):
    from gradio_client import handle_file
    return client.predict(handle_file(str(path)), api_name="/predict")


def test_predict_returns_the_served_probability_and_the_folds(client, model):
    answer = _predict(client, app_fixtures.PNG_SAMPLE)
    served = tf.saved_model.load(str(model / "1")).signatures[contract.DEFAULT_SIGNATURE](
        image_bytes=tf.constant([app_fixtures.PNG_SAMPLE.read_bytes()]))
    assert answer["probability_of_death"] == pytest.approx(float(served[contract.PROBABILITY][0]), abs=1e-6)
    assert answer["class"] == int(served[contract.CLASS][0]) and answer["error"] == ""
    assert len(answer["fold_probabilities"]) == 3 and answer["threshold"] == 0.5
    assert answer["model_status"].startswith("DEMO — not blessed for use")


def test_predict_reads_a_dicom_and_shows_only_harmless_header_fields(client):
    answer = _predict(client, app_fixtures.DICOM_SAMPLE)
    assert answer["error"] == "" and 0 <= answer["probability_of_death"] <= 1
    assert answer["dicom"]["view position"] == "AP" and answer["dicom"]["body part examined"] == "CHEST"
    assert set(answer["dicom"]) <= {label for _, label in explain.DICOM_FIELDS}


def test_a_lateral_dicom_is_warned_about(client, tmp_path):
    from tests.images import dicom_files
    path = dicom_files.write(dicom_files.dataset(dicom_files.sample_gray(), ViewPosition="LL"), tmp_path / "l.dcm")
    answer = _predict(client, path)
    assert answer["warnings"] == [explain.SCREEN_WARNINGS["dicom_lateral_view"]]


@pytest.mark.parametrize("view", ["LLD", "RLD", "RLO", "LAO"])
def test_a_decubitus_or_oblique_dicom_is_warned_about_as_ingest_drops_it(client, tmp_path, view):
    from components import configs
    from tests.images import dicom_files
    path = dicom_files.write(dicom_files.dataset(dicom_files.sample_gray(), ViewPosition=view), tmp_path / "v.dcm")
    answer = _predict(client, path)
    assert answer["error"] == "" and answer["warnings"] == [explain.NOT_FRONTAL_WARNING.format(
        view=view, frontal=", ".join(configs.FRONTAL_VIEWS))]
    assert not explain.not_frontal("ap supine", configs.FRONTAL_VIEWS)  # frontal, or no view: as ingest
    assert not explain.not_frontal("", configs.FRONTAL_VIEWS) and explain.not_frontal("LLD", configs.FRONTAL_VIEWS)


def test_a_broken_file_gets_its_reason_and_the_next_file_is_scored(client, tmp_path):
    broken = tmp_path / "Doe_John_1950.png"
    broken.write_text("not an X-ray")
    answer = _predict(client, broken)
    assert answer["probability_of_death"] is None and answer["class"] == -1
    assert answer["error"] == "not_an_image: upload.png is not a readable image"  # no real file name
    assert _predict(client, app_fixtures.PNG_SAMPLE)["error"] == ""


def test_uploads_are_removed_after_each_request_and_never_named_in_the_log(client, server, tmp_path, caplog):
    named = tmp_path / "Doe_John_1950.jpg"
    named.write_bytes(app_fixtures.PNG_SAMPLE.read_bytes())
    with caplog.at_level(logging.INFO, logger=page.LOG.name):
        assert _predict(client, named)["error"] == ""
    # Gradio's upload route leaves an empty staging file per upload (removed with the folder at exit): no bytes stay.
    left = [p for p in server.temp_root.rglob("*") if p.is_file() and p.stat().st_size]
    assert left == [] and not list(server.temp_root.glob("request-*"))
    assert caplog.records and "Doe" not in caplog.text and "bytes, scored" in caplog.text


def test_the_picture_shown_is_never_written_and_gradios_cache_is_emptied_after_its_age(model, tmp_path,
                                                                                        monkeypatch):
    """`show` (the page's own function for one image, not /predict) through Gradio's processing, the batch tab, and an
    upload never scored: once CACHE_KEPT_SECONDS (here 1 s) have passed, Gradio's cache holds no bytes."""
    import time

    import anyio
    import httpx
    from gradio.state_holder import SessionState
    monkeypatch.setattr(page, "CACHE_SWEEP_SECONDS", 1)
    monkeypatch.setattr(page, "CACHE_KEPT_SECONDS", 1)
    named = tmp_path / "Doe_John_1950.jpg"
    named.write_bytes(app_fixtures.PNG_SAMPLE.read_bytes())

    with app_fixtures.launched(model, "127.0.0.1", app_fixtures.free_port(), None, max_upload_mb=1) as blocks:
        cache = blocks.temp_root / "gradio"

        def upload() -> dict:
            with open(named, "rb") as handle:
                sent = httpx.post(blocks.local_url + "gradio_api/upload", files={"files": handle})
            return {"path": sent.json()[0], "orig_name": named.name, "meta": {"_type": "gradio.FileData"}}

        def run(name: str, inputs: list) -> list:
            function = next(f for f in blocks.fns.values() if getattr(f.fn, "__name__", "") == name)
            return anyio.run(lambda: blocks.process_api(function, inputs, state=SessionState(blocks)))["data"]

        def held() -> list:
            return [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size]

        markdown, picture, answer = run("show", [upload()])
        assert "Probability of death" in markdown and picture.startswith('<img src="data:image/png;base64,')
        assert held() == []  # the upload moved out and gone, the overlay inline: no X-ray in Gradio's cache
        rows, download, status = run("score", [[upload()]])
        assert rows["data"][0][0] == "Doe_John_1950.jpg" and status.startswith("1 scored")
        upload()  # never scored
        assert len(held()) == 2  # the download (it names the upload) and the upload waiting
        deadline = time.monotonic() + 30
        while held() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert held() == []


def test_sigterm_while_the_model_loads_removes_the_temporary_folder(model, tmp_path):
    import subprocess
    import sys

    from components import configs
    script = f"""
import os, signal, tempfile
tempfile.tempdir = {str(tmp_path)!r}
from serving import explain

def loading(*args):
    os.kill(os.getpid(), signal.SIGTERM)  # a service manager stopping the app while the model loads
    raise AssertionError("SIGTERM did not stop the app")

explain.Explainer = loading
from pipeline import app
try:
    app.launch({str(model)!r}, "127.0.0.1", {app_fixtures.free_port()}, None, 1)
except KeyboardInterrupt:
    print("stopped")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=configs.REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert (done.returncode, done.stdout) == (0, "stopped\n"), done.stderr
    assert list(tmp_path.glob("covid-cxr-app-*")) == []


def test_an_upload_over_the_limit_is_refused_with_the_limit(client, tmp_path):
    from gradio_client import handle_file
    big = tmp_path / "big.png"
    big.write_bytes(app_fixtures.PNG_SAMPLE.read_bytes() + b"\0" * 2**20)
    # gradio_client reads the limit from the page's config and refuses before sending anything.
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict(handle_file(str(big)), api_name="/predict")


def test_the_take_upload_limit_names_the_flag(tmp_path):
    (tmp_path / "cache").mkdir()
    upload = tmp_path / "cache" / "x.png"
    upload.write_bytes(b"\0" * 2048)
    with pytest.raises(page.UploadRefused, match=r"up to 0.00\d+ MB \(--max_upload_mb\)"):
        page.take_upload(upload, tmp_path, "upload.png", 1024)


def test_the_batch_tab_scores_through_the_scoring_job(model, tmp_path, monkeypatch):
    import zipfile

    from pipeline import score
    served = score.ServedModel.load(score.resolve_model(model))  # as launch loads it, once
    monkeypatch.setattr(score, "load_signature", lambda _: pytest.fail("a request loaded the model again"))
    monkeypatch.setattr(score, "model_sha256", lambda _: pytest.fail("a request hashed the model's files again"))
    archive = tmp_path / "cache" / "xrays.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as out:
        out.write(app_fixtures.PNG_SAMPLE, "a/00870a9c.jpg")
        out.write(app_fixtures.DICOM_SAMPLE, "a/00870a9c.dcm")
        out.writestr("b/broken.png", "nothing")
        out.writestr("../outside.png", "a name leaving the archive: skipped")
        out.writestr("__MACOSX/._x.jpg", "resource fork")
    loose = tmp_path / "cache2" / "00870a9c.jpg"
    loose.parent.mkdir()
    loose.write_bytes(app_fixtures.PNG_SAMPLE.read_bytes())
    others = [tmp_path / "cache3" / "notes.txt", tmp_path / "cache4" / ".hidden.png"]  # list_images skips both
    for other in others:
        other.parent.mkdir()
        other.write_text("not an X-ray")
    (tmp_path / "work").mkdir()
    rows, download, status = page.several_files(
        functools.partial(app.score_every_file, served), tmp_path / "work", tmp_path / "downloads", 2**20,
        [str(archive), str(loose), *map(str, others)])
    names = [row[0] for row in rows]
    assert sorted(names) == [".hidden.png", "00870a9c.dcm", "00870a9c.jpg", "1-00870a9c.jpg", "broken.png",
                             "notes.txt"]  # every file uploaded has its row
    for name in ("broken.png", "notes.txt", ".hidden.png"):
        row = rows[names.index(name)]
        assert row[1] == "" and row[3].startswith("not_an_image"), row
    assert status == "3 scored, 3 not scored (reason in the error column)."
    assert open(download).read().splitlines()[0] == "filename,probability_of_death,class,error"
    assert list((tmp_path / "work").iterdir()) == [] and not archive.exists() and not loose.exists()
    assert not list(tmp_path.rglob("outside.png"))


def _zip_of_one(path, data=b"x" * 5000, method=None, flag=0):
    """A zip holding `Doe_John_1950.png`, its headers' compression method and flag bits set as given."""
    import zipfile
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("Doe_John_1950.png", data)
    raw = bytearray(path.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.index(signature) + flags_at
        raw[at] |= flag
        if method is not None:
            raw[at + 2:at + 4] = method.to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    return path


def _corrupt(path):
    raw = bytearray(_zip_of_one(path).read_bytes())
    start = 30 + len("Doe_John_1950.png")  # the local header, its name, no extra field: the deflated data
    raw[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("make", [lambda p: _zip_of_one(p, flag=0x1),  # encrypted: RuntimeError names the entry
                                  lambda p: _zip_of_one(p, method=9),  # Deflate64: NotImplementedError
                                  _corrupt,  # damaged deflate data: zlib.error
                                  lambda p: p.write_bytes(b"PK\x03\x04 not a zip") and p])  # BadZipFile
def test_a_zip_that_cannot_be_unpacked_is_refused_without_naming_an_entry(tmp_path, make, caplog):
    (tmp_path / "cache").mkdir()
    archive = make(tmp_path / "cache" / "x.zip")
    loose = tmp_path / "cache2" / "Roe_Jane.png"
    loose.parent.mkdir()
    loose.write_bytes(b"waits in Gradio's cache")
    (tmp_path / "work").mkdir()
    with caplog.at_level(logging.INFO, logger=page.LOG.name):
        rows, download, status = page.several_files(
            lambda images, output: pytest.fail("nothing is scored"), tmp_path / "work", tmp_path / "downloads",
            2**20, [str(archive), str(loose)])
    assert rows == [] and download is None
    assert status == ("Refused: The .zip file could not be unpacked: it is damaged, encrypted or compressed in a "
                      "way this page does not read (stored or deflated entries, no password).")
    assert "Doe" not in caplog.text and "Roe" not in caplog.text
    assert list((tmp_path / "work").iterdir()) == [] and not archive.exists() and not loose.exists()


def test_a_zip_ending_early_is_refused_too(tmp_path, monkeypatch):
    def truncated(source, out):
        raise EOFError("Doe_John_1950.png")  # what a zip cut short raises while it is read
    monkeypatch.setattr(page.shutil, "copyfileobj", truncated)
    with pytest.raises(page.UploadRefused, match="could not be unpacked") as refused:
        page.extract_zip(_zip_of_one(tmp_path / "x.zip"), tmp_path, 2**20, page.UniqueNames())
    assert "Doe" not in str(refused.value)


def test_a_zip_of_too_many_entries_is_refused(tmp_path, monkeypatch):
    import zipfile
    monkeypatch.setattr(page, "MAX_ZIP_MEMBERS", 3)
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as out:
        for i in range(4):
            out.writestr(f"{i}.png", "x")
    (tmp_path / "out").mkdir()
    with pytest.raises(page.UploadRefused, match="The zip holds 4 entries; this page takes at most 3"):
        page.extract_zip(tmp_path / "x.zip", tmp_path / "out", 2**20, page.UniqueNames())
    assert list((tmp_path / "out").iterdir()) == []


def test_unique_names_number_repeats_in_constant_time():
    names = page.UniqueNames()
    assert [names(n) for n in ("a/x.png", "b/x.png", "1-x.png", "x.png", "", "c/")] == [
        "x.png", "1-x.png", "1-1-x.png", "2-x.png", "file", "c"]
    many = page.UniqueNames()
    assert len({many("x.png") for _ in range(20_000)}) == 20_000  # quadratic, this took minutes


def test_an_export_without_the_explain_signature_still_answers(tmp_path):
    from serving import signature
    from tests.serving import helpers
    server = signature.EnsembleServer([helpers.tiny_classifier(0)])
    module = tf.Module()
    module.models = server.models
    module.predict = tf.function(server.predict_bytes, input_signature=[
        tf.TensorSpec([None], tf.string, name=contract.INPUT_NAME)])
    tf.saved_model.save(module, str(tmp_path / "old"), signatures={contract.DEFAULT_SIGNATURE: module.predict})
    explainer = explain.Explainer(tmp_path / "old")
    found = explainer.explain(app_fixtures.PNG_SAMPLE)
    assert found.result["error"] == "" and found.result["fold_probabilities"] is None and found.overlay is None
    assert any("no `explain` signature" in gap for gap in explainer.missing())
    assert any("No model card" in gap for gap in explainer.missing())
    assert "DEMO" in page.banner_markdown(explainer)


def test_the_overlay_is_the_image_where_the_map_is_cold():
    image = np.full((4, 4, 3), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    blended = explain.overlay(image, heat)
    assert blended.shape == (4, 4, 3) and blended.dtype == np.uint8
    assert blended[0, 0, 0] > blended[0, 0, 2]  # the peak is red
    assert blended[3, 3, 2] > blended[3, 3, 0]  # cold is blue


def test_other_machines_need_a_login(tmp_path):
    with pytest.raises(app.AppError, match="give --auth_file"):
        app.login("0.0.0.0", None)
    assert app.login("127.0.0.1", None) is None
    users = tmp_path / "users.txt"
    users.write_text("ana:s3cret\n")
    users.chmod(0o644)
    with pytest.raises(app.AppError, match="can be read by others"):
        app.login("0.0.0.0", str(users))
    users.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert app.login("0.0.0.0", str(users)) == [("ana", "s3cret")]
    users.write_text("no colon\n")
    with pytest.raises(app.AppError, match="username:password"):
        app.read_auth_file(users)


def test_the_page_behind_a_login_answers_nothing_without_it(model, client, tmp_path):
    import urllib.error
    import urllib.request
    users = tmp_path / "users.txt"
    users.write_text("ana:s3cret\n")
    users.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with app_fixtures.launched(model, "127.0.0.1", app_fixtures.free_port(), str(users), 1) as blocks:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(blocks.local_url + "config")
        assert refused.value.code == 401
    # A second app in this process set GRADIO_TEMP_DIR for itself: the first takes uploads again once it is gone.
    assert _predict(client, app_fixtures.PNG_SAMPLE)["error"] == ""


def test_the_command_refuses_other_machines_without_a_login(model, capsys):
    from absl.testing import flagsaver
    with flagsaver.flagsaver():
        app.FLAGS(["app", f"--model={model}", "--host=0.0.0.0"])
        assert app.main(["app"]) == 2
        assert capsys.readouterr().err.startswith("error: --host 0.0.0.0 is reachable from other machines")
        app.FLAGS(["app", "--model="])
        assert app.main(["app"]) == 2
        assert capsys.readouterr().err == "error: --model is required\n"


def test_the_page_shows_an_external_validation_of_its_model(server, site_validation):
    record = json.loads((site_validation / validations.VALIDATION_JSON).read_text())
    with urllib.request.urlopen(server.local_url + "config") as response:
        config = json.loads(response.read())
    trust = next(c["props"]["value"] for c in config["components"] if c["props"].get("elem_id") == "trust")
    images = record["images"]
    assert "**External site `SITE_A`**" in trust and "**External sites**: none" not in trust
    assert (f"{images['n']} images of {images['patients']} patients; {images['events']} images of the "
            f"{record['patients']['events']} patients who died") in trust
    for name, label in validations.METRICS:
        low, high = images["intervals"][name]["low"], images["intervals"][name]["high"]
        assert f"| {label} | {images['estimate'][name]:.3f} | {low:.3f} – {high:.3f} |" in trust
    assert record["events"].startswith("This site has") and f"> {record['events']}" in trust
    assert record["data_dir"] not in trust and str(site_validation) not in trust  # no path reaches the page
    assert "**Development**" in trust  # beside, not instead


def test_an_updated_versions_own_sites_show_beside_its_validations(model, site_validation):
    from components import validate
    assert validations.VALIDATION_JSON == validate.VALIDATION_NAME
    card = json.loads((model / "1" / explain.MODEL_CARD_JSON).read_text())
    card["updates"] = [{"site": "SITE_B", "date": "2026-01-02 10:00 UTC", "images": 40, "patients": 20,
                        "patients_who_died": 5, "method": "intercept", "intercept": -0.5, "slope": 1.0}]
    site = validations.read_one(site_validation, json.loads(
        (site_validation / validations.VALIDATION_JSON).read_text())["model"]["sha256"])
    trust = page.trust_markdown(types.SimpleNamespace(card=card), [site])
    assert "- site SITE_B (2026-01-02 10:00 UTC): 40 images of 20 patients, 5 of whom died; intercept" in trust
    assert "**External site `SITE_A`**" in trust and "**External sites**: none" not in trust
    assert "**External sites**: none" in page.trust_markdown(types.SimpleNamespace(card={**card, "updates": []}))


def test_a_copy_of_the_model_is_the_same_model_and_an_edited_one_is_not(model, site_validation, tmp_path):
    from pipeline import score
    copy = shutil.copytree(model / "1", tmp_path / "elsewhere" / "7")
    sites = app.external_validations([str(site_validation)], score.model_sha256(copy))
    assert sites[0].site == "SITE_A"  # paths do not matter
    card = copy / explain.MODEL_CARD_JSON
    card.write_text(card.read_text().replace("covid_demo", "covid_other"))  # another card: another model
    with pytest.raises(app.AppError) as refused:
        app.external_validations([str(site_validation)], score.model_sha256(copy))
    message = str(refused.value)
    assert message.startswith(f"--validations: another_model: {site_validation} validated another model (covid_demo "
                              "version 1, sha256 ") and "\n" not in message
    assert f"not the one served (sha256 {score.model_sha256(copy)[:12]})" in message


def test_the_command_refuses_a_folder_without_a_validation_or_its_model_identity(model, site_validation, tmp_path,
                                                                                capsys):
    from absl.testing import flagsaver
    old = tmp_path / "old"
    old.mkdir()
    record = json.loads((site_validation / validations.VALIDATION_JSON).read_text())
    del record["model"]["sha256"]  # as validate wrote it before it recorded the model's identity
    (old / validations.VALIDATION_JSON).write_text(json.dumps(record))
    with flagsaver.flagsaver():
        app.FLAGS(["app", f"--model={model}", f"--validations={site_validation},{tmp_path}"])
        assert app.main(["app"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: --validations: no_validation_json: {tmp_path} holds no validation.json")
        assert error.count("\n") == 1
        app.FLAGS(["app", f"--model={model}", f"--validations={old}"])
        assert app.main(["app"]) == 2
        assert capsys.readouterr().err.startswith("error: --validations: no_model_identity: ")
    (old / validations.VALIDATION_JSON).write_text("{")
    with pytest.raises(validations.ValidationRefused) as refused:
        validations.read_one(old, "0" * 64)
    assert refused.value.reason == "unreadable_validation_json"
