"""`python -m pipeline.validate` end to end: a tiny exported model validated and updated on a second data folder."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from components import base, configs, export, model_card
from components import validate
from pipeline import score
from serving import contract, push
from tests.serving import helpers


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    """A run's export of tiny fold models, pushed (not blessed) to the demo name."""
    folder = tmp_path_factory.mktemp("run")
    helpers.write_folds(folder / "train", k=3)
    helpers.write_train_records(folder / "train", k=3)
    params = {"serving_dir": str(folder / "serving"), "model_name": "covid", "demo_model_name": "covid_demo",
              "push_demo": True, "bless_min_roc_auc": 0.7, "threshold": 0.5, "members": "all", "recalibrate": True,
              "metrics": {export.BLESSING_METRIC: 0.5}}
    base.execute(export.SPEC, {"model": helpers.fake_artifact(folder / "train", "train")}, params, folder / "runs")
    return folder / "serving"


def _validate(*flags):
    # A front door imported earlier in this process set TF_CPP_MIN_LOG_LEVEL, which the child would read as the
    # user's own setting and so show TensorFlow's start-up lines (common/quiet.py).
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "pipeline.validate", *flags], cwd=configs.REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_a_site_is_validated_and_its_update_served(served_model, copy_sample, tmp_path):
    site, out = copy_sample("site"), tmp_path / "out"
    done = _validate(f"--model={served_model / 'covid_demo'}", f"--data_dir={site}", f"--output_dir={out}",
                     "--bootstrap_resamples=30", "--update=intercept", "--site=SITE_A",
                     f"--serving_dir={served_model}")
    assert done.returncode == 0, done.stderr
    assert "Report:" in done.stdout and "pushed version 2" in done.stdout
    record = json.loads((out / validate.VALIDATION_NAME).read_text())
    assert record["site"] == "SITE_A" and record["case_mix"]["site"]["images"] == record["images"]["n"]
    # The model's identity, as the app checks it: every file of the version validated (version 2 is another model).
    assert record["model"]["sha256"] == score.model_sha256(served_model / "covid_demo" / "1")
    assert record["model"]["version"] == 1 and record["model"]["name"] == "covid_demo"
    assert record["patients"]["n"] == record["images"]["patients"] < record["images"]["n"]
    for name in ("roc_auc", "o_e_ratio", "calibration_slope", "sensitivity", "npv"):
        assert name in record["images"]["intervals"]
    with open(out / validate.PREDICTIONS_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == record["images"]["n"] and {"source_id", "patient_id", "died"} <= set(rows[0])
    died = np.array([int(r["died"]) for r in rows])
    updated = np.array([float(r["probability_of_death_updated"]) for r in rows])
    assert updated.mean() == pytest.approx(died.mean(), abs=1e-9)  # an intercept update: mean risk = death rate
    page = (out / "report.html").read_text()
    for heading in ("Is this site enough?", "Case mix", "Discrimination", "Calibration", "Clinical usefulness",
                    "Subgroups", "Model update"):
        assert f"<h2>{heading}</h2>" in page
    assert "Riley et al." in page and "data:image/png;base64," in page

    version = served_model / "covid_demo" / "2"
    assert push.existing_versions(served_model / "covid_demo") == [1, 2]
    card = model_card.read(version)
    assert card["updates"][0]["site"] == "SITE_A" and card["updates"][0]["method"] == "intercept"
    assert card["updates"][0]["images"] == record["images"]["n"]
    first = rows[:3]
    images = [(site / "images" / r["source_id"]).read_bytes() for r in first]
    served = tf.saved_model.load(str(version)).signatures[contract.DEFAULT_SIGNATURE](image_bytes=tf.constant(images))
    np.testing.assert_allclose(served[contract.PROBABILITY].numpy(),
                               [float(r["probability_of_death_updated"]) for r in first], atol=1e-5)


def test_bad_input_is_one_line_and_exit_status_2(served_model, tmp_path):
    done = _validate(f"--model={served_model / 'covid_demo'}", f"--output_dir={tmp_path}")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == ["error: --data_dir is required"]
    done = _validate(f"--model={served_model / 'covid_demo'}", f"--data_dir={tmp_path}", f"--output_dir={tmp_path}",
                     "--update=auto")
    assert done.returncode == 2 and "--update needs --site" in done.stderr
