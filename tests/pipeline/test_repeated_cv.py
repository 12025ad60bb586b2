"""The pipeline with `--repeats=2` end to end on the embedded sample, tiny settings, with the stage-3
ResNet-18: repeat 0 reuses the single split's finished folds, repeat 1 splits anew, evaluate adds the mean
over repeats. In this process (test_flags maps the flags to these configs)."""

import contextlib
import csv
import dataclasses
import io
import json

import keras
import numpy as np
import pytest

import models  # noqa: F401  (registers the custom layers for load_model)
from components import configs
from components.evaluate import component as evaluate
from components.evaluate import repeats as evaluate_repeats
from components.train import outputs as train_outputs, splits
from pipeline import local_runner
from pipeline.pipeline import create_pipeline

TINY_TRAIN = configs.TrainConfig(image_size=32, folds=2, epochs_frozen=1, epochs_unfrozen=1, lr_finder_steps=4,
                                 batch_size=8, precision="fp32", arch="resnet18_stage3")
TINY_EVALUATE = configs.EvaluateConfig(bootstrap_resamples=50, gradcam_images=0)


def _run(out, repeats=1):
    """The pipeline up to evaluate; returns everything it printed (the train stage writes through tqdm)."""
    config = configs.PipelineConfig(output_dir=out, train=dataclasses.replace(TINY_TRAIN, repeats=repeats),
                                    evaluate=TINY_EVALUATE)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        local_runner.run_pipeline(create_pipeline(config), "evaluate")
    return printed.getvalue()


def _train_dir(out, repeats):
    (folder,) = [path.parent for path in (out / "train").glob(f"*/{train_outputs.SUMMARY}")
                 if train_outputs.read_summary(path.parent)["params"]["repeats"] == repeats]
    return folder


def _evaluation(out, repeated):
    """(folder, record) of the evaluate artifact with (or without) the repeated-CV entry."""
    records = [(path.parent, json.loads(path.read_text()))
               for path in (out / "evaluate").glob(f"*/{evaluate.EVALUATION_NAME}")]
    (found,) = [(folder, record) for folder, record in records if ("repeated_cv" in record) == repeated]
    return found


def _fold_of_row(train_dir, repeat):
    """source_id -> validation fold, and patient -> the set of folds its images were validated in."""
    rows = train_outputs.read_predictions(train_outputs.repeat_dir(train_dir, repeat))
    fold_of = dict(zip(rows["source_id"], rows["fold"]))
    assert len(fold_of) == len(rows["source_id"])  # every row validated once
    patient_folds = {}
    for patient, fold in zip(rows["patient"], rows["fold"]):
        patient_folds.setdefault(patient, set()).add(int(fold))
    return fold_of, patient_folds


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("repeated")
    _run(out)
    log = _run(out, repeats=2)
    return out, log


def test_repeat_0_reuses_the_single_splits_folds_and_repeat_1_trains_its_own(runs):
    out, log = runs
    assert log.count("reused finished fold") == 2  # the single split's two folds are repeat 0's
    single, repeated = _train_dir(out, 1), _train_dir(out, 2)
    for fold in range(2):
        name = train_outputs.PREDICTIONS_CSV
        assert (train_outputs.fold_dir(repeated, fold) / name).read_bytes() == \
            (train_outputs.fold_dir(single, fold) / name).read_bytes()
        assert (train_outputs.fold_dir(train_outputs.repeat_dir(repeated, 1), fold) / name).is_file()
    summary = train_outputs.read_summary(repeated)
    assert [(f["repeat"], f["fold"]) for f in summary["folds"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert summary["split_seeds"] == [0, splits.repeat_seed(0, 1)]
    assert len({f["work_dir"] for f in summary["folds"]}) == 4


def test_every_repeat_keeps_each_patient_in_one_fold_and_the_repeats_differ(runs):
    out, _ = runs
    train_dir = _train_dir(out, 2)
    (first, first_patients), (second, second_patients) = (_fold_of_row(train_dir, r) for r in range(2))
    assert first.keys() == second.keys()
    # A patient validated in one fold only is in the training rows of no fold that validates it.
    assert all(len(folds) == 1 for folds in [*first_patients.values(), *second_patients.values()])
    rows = sorted(first)
    together = [np.equal.outer(*[np.array([assignment[r] for r in rows])] * 2) for assignment in (first, second)]
    assert not np.array_equal(*together)


def test_evaluate_reports_the_mean_over_repeats_beside_repeat_0s_sets(runs):
    out, _ = runs
    (_, single), (repeated, record) = _evaluation(out, repeated=False), _evaluation(out, repeated=True)
    # The single-split sets are repeat 0's, the same numbers as the run without repeats.
    assert record["sets"] == single["sets"]
    repeated_cv = record["repeated_cv"]
    assert repeated_cv["repeats"] == 2 and repeated_cv["unit"] == "patient"
    auc = repeated_cv["metrics"]["roc_auc"]
    assert auc["mean"] == pytest.approx(np.mean([r["roc_auc"] for r in repeated_cv["per_repeat"]]))
    pooled = record["sets"][evaluate.OBSERVED]["pooled"]
    assert repeated_cv["per_repeat"][0]["roc_auc"] == pytest.approx(pooled["roc_auc"])
    with open(repeated / evaluate_repeats.TABLE_NAME, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["metric"] for row in table if row["set"] == "image"] == list(evaluate_repeats.METRICS)
    assert {row["set"] for row in table} == {"image", "image_recalibrated_cross_fitted", "age_sex", "image_age_sex"}


def test_the_folds_are_stage3_resnets(runs):
    out, _ = runs
    path = train_outputs.model_path(train_outputs.repeat_dir(_train_dir(out, 2), 1), 0)
    model = keras.models.load_model(path, compile=False)
    assert model.get_layer("backbone").stages == 3
    assert model.get_layer("backbone").output_shape[-1] == 256
