"""The train stage's output layout (components/train/outputs.py): write a fold's files, read them back."""

import csv
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

import models  # noqa: F401  (registers the project's layers for loading)
from components.train import input_pipeline, lr_finder, outputs
from tests.serving import helpers

REPO = Path(__file__).resolve().parents[3]
IMAGE_SIZE = 16


def _examples(n: int, seed: int) -> input_pipeline.Examples:
    rng = np.random.default_rng(seed)
    return input_pipeline.Examples(
        images=rng.uniform(0, 255, (n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32),
        labels=rng.integers(0, 2, n), label_sources=np.array(["observed", "imputed"] * (n // 2) + ["observed"] * (n % 2)),
        source_ids=np.array([f"img-{seed}-{i}.png" for i in range(n)]),
        patients=np.array([f"p{seed}-{i // 2}" for i in range(n)]), sha256=np.array(["0" * 64] * n),
        clinical=np.full((n, 5), -1), sites=np.array([""] * n), aux=np.zeros((n, 0), np.int64))


def _history(fold: int) -> list[dict]:
    rows = [{"phase": "frozen", "epoch": 0, "global_epoch": 0, "lr_max": 1e-3, "train_loss": 0.7 + fold,
             "val_loss": 0.69, "val_auc": math.nan}]
    rows += [{"phase": "unfrozen", "epoch": e, "global_epoch": 1 + e, "lr_max": 2e-4, "train_loss": 0.6 - e / 10,
              "val_loss": 0.65, "val_auc": 0.5 + e / 10, "fed_positive_fraction": 0.5} for e in range(2)]
    return rows


def _curve(scale: float) -> dict:
    curve = lr_finder.sweep(lambda lr: scale / (1 + lr * 1e3) + lr, num_steps=30)
    lr_finder.suggest(curve)
    return curve


@pytest.fixture
def written(tmp_path):
    """A train artifact of two folds written through `outputs`, and what went into it."""
    folds = {}
    for k in range(2):
        val = _examples(5 + k, seed=k)
        model = helpers.tiny_classifier(k, IMAGE_SIZE)
        logits = model.predict(val.images, verbose=0)[:, 0]
        probabilities = 1 / (1 + np.exp(-logits.astype(np.float64)))
        curves = {"frozen": _curve(1.0 + k), "unfrozen": _curve(2.0 + k)}
        result = {"fold": k, "num_val": len(val), "lr": {p: c["suggestion"] for p, c in curves.items()}}
        rows = outputs.prediction_rows(val, probabilities)
        outputs.write_fold(outputs.fold_dir(tmp_path, k), k, model, _history(k), curves, rows, result)
        folds[k] = {"val": val, "model": model, "probabilities": probabilities, "curves": curves, "result": result}
    summary = {"variant": "original_weights", "folds": [f["result"] for f in folds.values()]}
    outputs.write_summary(tmp_path, summary)
    return tmp_path, folds, summary


def test_a_fold_folder_holds_every_file_of_the_layout(written):
    train_dir, _, _ = written
    folder = outputs.fold_dir(train_dir, 0)
    names = {p.name for p in folder.iterdir()}
    assert names == {"model.keras", "history.csv", "history.json", "predictions.csv", "predictions.json",
                     "lr_find_frozen.json", "lr_find_frozen.png", "lr_find_unfrozen.json", "lr_find_unfrozen.png",
                     "tensorboard", "fold.json"}
    assert (folder / "lr_find_frozen.png").read_bytes()[:4] == b"\x89PNG"
    assert list((folder / "tensorboard").glob("events.out.tfevents.*"))
    assert (train_dir / "train_summary.json").is_file()
    with open(folder / "history.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["phase", "epoch", "global_epoch", "lr_max", "train_loss", "val_loss", "val_auc",
                      "fed_positive_fraction"]  # every key, in first-seen order


def test_what_was_written_reads_back(written):
    train_dir, folds, summary = written
    assert outputs.read_summary(train_dir) == summary
    assert [k for k, _ in outputs.fold_dirs(train_dir)] == [0, 1]

    predictions = outputs.read_predictions(train_dir)
    assert list(predictions) == ["fold", "source_id", "patient", "label", "label_source", "probability"]
    assert predictions["fold"].tolist() == [0] * 5 + [1] * 6
    for k, fold in folds.items():
        rows = predictions["fold"] == k
        val = fold["val"]
        assert predictions["source_id"][rows].tolist() == val.source_ids.tolist()
        assert predictions["patient"][rows].tolist() == val.patients.tolist()
        assert predictions["label"][rows].tolist() == val.labels.tolist()
        assert predictions["label_source"][rows].tolist() == val.label_sources.tolist()
        np.testing.assert_array_equal(predictions["probability"][rows], fold["probabilities"])  # csv keeps repr
        as_json = json.loads((outputs.fold_dir(train_dir, k) / outputs.PREDICTIONS_JSON).read_text())
        assert [r["probability"] for r in as_json] == fold["probabilities"].tolist()
        assert json.loads((outputs.fold_dir(train_dir, k) / outputs.FOLD_RECORD).read_text()) == fold["result"]

    histories = outputs.read_histories(train_dir)
    assert list(histories) == [0, 1]
    for k in (0, 1):  # NaN survives the JSON round trip as NaN
        assert [{key: v for key, v in row.items() if key != "val_auc"} for row in histories[k]] == [
            {key: v for key, v in row.items() if key != "val_auc"} for row in _history(k)]
        assert math.isnan(histories[k][0]["val_auc"])

    curves = outputs.read_lr_curves(train_dir)
    assert list(curves) == ["fold 0, body frozen", "fold 0, body unfrozen", "fold 1, body frozen",
                            "fold 1, body unfrozen"]
    assert curves["fold 1, body unfrozen"] == folds[1]["curves"]["unfrozen"]

    paths = sorted(outputs.fold_model_paths(train_dir))
    assert paths == [outputs.model_path(train_dir, 0), outputs.model_path(train_dir, 1)]
    for k, fold in folds.items():
        loaded = keras.models.load_model(outputs.model_path(train_dir, k), compile=False)
        for a, b in zip(loaded.get_weights(), fold["model"].get_weights()):
            np.testing.assert_array_equal(a, b)


def test_fold_folders_are_read_in_numeric_order(tmp_path):
    for k in (10, 2, 1):
        outputs.fold_dir(tmp_path, k).mkdir()
    assert [k for k, _ in outputs.fold_dirs(tmp_path)] == [1, 2, 10]
    assert outputs.fold_glob(outputs.PREDICTIONS_CSV) == "fold_*/predictions.csv"


COMMITTED = sorted(p.parent for p in (REPO / "results").glob("*/*/train_summary.json"))


@pytest.mark.parametrize("train_dir", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_results_still_load(train_dir):
    summary = outputs.read_summary(train_dir)
    predictions = outputs.read_predictions(train_dir)
    single_split = [f["fold"] for f in summary["folds"] if f.get("repeat", 0) == 0]  # what read_predictions reads
    assert sorted(set(predictions["fold"].tolist())) == sorted(single_split) == list(range(len(single_split)))
    assert predictions["probability"].dtype == np.float64 and predictions["label"].dtype.kind == "i"
    assert set(predictions["label_source"]) <= {"observed", "imputed"}


def test_there_are_committed_results_to_load():
    assert len(COMMITTED) >= 10


def test_tensorboard_reads_the_scalars_of_a_fold_as_it_trains(tmp_path):
    import tensorflow as tf
    from tensorboard.backend.event_processing import plugin_event_accumulator

    def scalars(tag):  # as TensorBoard's scalars dashboard finds and reads them
        return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in reader.Tensors(tag)]

    live = outputs.LiveScalars(tmp_path)
    history, curve = _history(0), _curve(1.0)
    live.lr_curve("frozen", curve)
    live.epoch(history[0])
    reader = plugin_event_accumulator.EventAccumulator(str(tmp_path))  # before close: flushed as written
    reader.Reload()
    tags = reader.PluginTagToContent("scalars")
    assert {"train_loss", "val_loss", "lr_max", "lr_find_frozen/smoothed_loss"} <= set(tags)
    assert "val_auc" not in tags  # NaN is not plotted
    assert scalars("train_loss") == [(0, pytest.approx(0.7))]
    assert len(scalars("lr_find_frozen/smoothed_loss")) == sum(map(math.isfinite, curve["losses"]))
    live.epoch(history[1])
    live.close()
    reader.Reload()
    assert scalars("train_loss") == [(0, pytest.approx(0.7)), (1, pytest.approx(0.6))]
