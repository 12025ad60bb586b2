"""A small exported model for the app's tests and benchmark: three tiny fold models with a backbone, exported
and pushed as a DEMO by the export stage itself, so the page reads a real card; and its external validation by
`pipeline.validate`, for the page's validation evidence."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from components import base, configs, export
from tests.serving import helpers

DICOM_SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "covid-chestxray-dicom" / "00870a9c.dcm"
PNG_SAMPLE = helpers.SAMPLE_IMAGES / "00870a9c.jpg"


def demo_export(root: Path) -> Path:
    """`root/serving/covid_demo`: a TF Serving model folder holding version 1, not blessed."""
    train = root / "train"
    for fold in range(3):
        path = train / f"fold_{fold}" / "model.keras"
        path.parent.mkdir(parents=True, exist_ok=True)
        helpers.tiny_backbone_classifier(fold).save(path)
    helpers.write_train_records(train, k=3)
    params = {"serving_dir": str(root / "serving"), "model_name": "covid", "demo_model_name": "covid_demo",
              "push_demo": True, "bless_min_roc_auc": 0.7, "threshold": 0.5, "members": "all",
              "metrics": {"roc_auc_ci_low": 0.55}}
    base.execute(export.SPEC, {"model": helpers.fake_artifact(train, "train")}, params, root / "runs")
    return root / "serving" / "covid_demo"


@contextlib.contextmanager
def launched(model, *args, **kwargs):
    """`pipeline.app.launch(..., block=False)`, closed, its folder removed and GRADIO_TEMP_DIR as it was again on the
    way out. launch sets that variable for the whole process and Gradio reads it at each upload, so while a second
    app runs the first refuses uploads; restored, the first takes them again, whatever order tests run in."""
    from pipeline import app
    before = os.environ.get("GRADIO_TEMP_DIR")
    blocks = None
    try:
        blocks = app.launch(str(model), *args, block=False, **kwargs)
        yield blocks
    finally:
        if blocks is not None:
            blocks.close()
            shutil.rmtree(blocks.temp_root, ignore_errors=True)
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def validate(model: Path, data_dir: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    """`python -m pipeline.validate` of `model` on `data_dir` into `out`, with few resamples (seconds, not minutes)."""
    # A front door imported earlier in this process set TF_CPP_MIN_LOG_LEVEL, which the child would read as the
    # user's own setting (common/quiet.py).
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "pipeline.validate", f"--model={model}", f"--data_dir={data_dir}",
                           f"--output_dir={out}", "--bootstrap_resamples=30", *flags], cwd=configs.REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
