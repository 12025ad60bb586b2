"""Kill a training run with SIGKILL mid-fold, start it again: it resumes and ends exactly as an unbroken run.
The killed run also recomputes the batch-norm statistics (`--recompute_batch_norm`): its training is the
unbroken run's bit for bit, its saved statistics are not.

Tiny settings (the stage-3 ResNet-18, 32 px, 2 folds, 1+2 epochs, batch 8) on the embedded sample, in
subprocesses, up to the train stage: what resumes is the fold's state, whatever the network.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TINY = ["--arch=resnet18_stage3", "--image_size=32", "--folds=2", "--epochs_frozen=1", "--epochs_unfrozen=2",
        "--lr_finder_steps=4", "--batch_size=8", "--precision=fp32", "--stop_after=train"]  # what is asserted here is train's


def _command(out, *extra):
    return [sys.executable, "-m", "pipeline.run", f"--output_dir={out}", *TINY, *extra]


def _run(out, *extra):
    proc = subprocess.run(_command(out, *extra), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _named_checkpoint(fold_dir) -> bool:
    """Whether the fold's state names a checkpoint that is on disk: what a resume reads (a checkpoint file
    written but not yet named in state.json is not one, and a loaded machine can be killed between them)."""
    try:
        name = json.loads((fold_dir / "state.json").read_text()).get("checkpoint")
    except (OSError, json.JSONDecodeError):
        return False
    return bool(name) and (fold_dir / name).is_file()


def _summary(out):
    (path,) = (out / "train").glob("*/train_summary.json")
    summary = json.loads(path.read_text())
    return summary, [json.loads((path.parent / f"fold_{k}" / "history.json").read_text()) for k in range(2)]


def _scalars(folder):
    """{tag: {step: value}} of every scalar in the TensorBoard event files under `folder`."""
    import tensorflow as tf

    found = {}
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return found


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    out = tmp_path_factory.mktemp("unbroken")
    _run(out)
    return _summary(out)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A run that also recomputes the batch-norm statistics, SIGKILLed once fold 0 is done and fold 1 has a
    checkpoint, then run again: (its output folder, the second run's log, fold 1's work folder, the
    TensorBoard scalars fold 1 had written by the kill)."""
    out = tmp_path_factory.mktemp("killed")
    proc = subprocess.Popen(_command(out, "--recompute_batch_norm"), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    work = out / "train" / "work"
    deadline = time.time() + 900
    killed = False
    while time.time() < deadline and proc.poll() is None:
        done = list(work.glob("fold-*/done.json"))
        midway = [d for d in work.glob("fold-*") if not (d / "done.json").exists() and _named_checkpoint(d)]
        if len(done) == 1 and midway:  # fold 0 finished, fold 1 has a checkpoint and is still training
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed, "the run finished or stalled before it could be killed mid-fold"
    assert not list((out / "train").glob("*/artifact.json"))  # nothing looks finished
    (unfinished,) = [p for p in work.glob("fold-*") if p.is_dir() and not (p / "done.json").exists()]
    live_at_kill = _scalars(unfinished / "tensorboard_live")
    # Resumed under a flag that does not change what a fold computes: the folds are still found.
    log = _run(out, "--recompute_batch_norm", "--strategy=default")
    return out, log, unfinished, live_at_kill


def test_sigkill_mid_fold_then_resume_equals_an_unbroken_run(unbroken, resumed):
    out, log, unfinished, live_at_kill = resumed
    assert live_at_kill["train_loss"] and live_at_kill["lr_find_frozen/smoothed_loss"]  # TensorBoard saw it train
    assert "reused finished fold" in log and "resumed from ckpt-" in log
    summary, histories = _summary(out)
    expected_summary, expected_histories = unbroken
    assert histories == expected_histories  # every epoch's losses and metrics, bit for bit
    live = _scalars(unfinished / "tensorboard_live")  # the epochs before the kill, and those re-run after
    assert live["train_loss"] == {row["global_epoch"]: pytest.approx(row["train_loss"]) for row in histories[1]}
    assert [f["lr"] for f in summary["folds"]] == [f["lr"] for f in expected_summary["folds"]]


def test_recomputed_batch_norm_changes_the_saved_statistics_and_nothing_that_trained(unbroken, resumed):
    import csv

    import keras
    import numpy as np
    from sklearn.metrics import roc_auc_score

    import models  # noqa: F401  (registers the project's layers for loading)
    from components.train import batch_norm_stats

    out, log, _, _ = resumed  # fold 0 recomputed before the kill, fold 1 after its resumed epochs
    assert "batch-norm statistics of 17 layers recomputed" in log  # the stage-3 body's 15 + the head's 2
    summary, histories = _summary(out)
    expected_summary, expected_histories = unbroken
    assert histories == expected_histories  # recomputed after the last epoch: training is the same
    assert [f["batch_norm_layers_recomputed"] for f in summary["folds"]] == [17, 17]
    assert [f["batch_norm_layers_recomputed"] for f in expected_summary["folds"]] == [0, 0]
    assert all("batch_norm_stats" in f["timings"] for f in summary["folds"])
    for k, fold in enumerate(summary["folds"]):  # final val_* are of the saved (recomputed) model
        (predictions,) = (out / "train").glob(f"*/fold_{k}/predictions.csv")
        rows = list(csv.DictReader(predictions.read_text().splitlines()))
        auc = roc_auc_score([int(r["label"]) for r in rows], [float(r["probability"]) for r in rows])
        assert fold["final"]["val_auc"] == pytest.approx(auc, abs=1e-6)

    def fold_model(run_out, k):
        (path,) = (run_out / "train").glob(f"*/fold_{k}/model.keras")
        return keras.models.load_model(path, compile=False)

    plain_out = Path(expected_summary["folds"][0]["work_dir"]).parents[2]
    for k in range(2):
        plain, precise = fold_model(plain_out, k), fold_model(out, k)
        for a, b in zip(plain.trainable_weights, precise.trainable_weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        for a, b in zip(batch_norm_stats.trainable_batch_norm_layers(plain),
                        batch_norm_stats.trainable_batch_norm_layers(precise)):
            assert not np.allclose(a.moving_variance.numpy(), b.moving_variance.numpy())
