"""The shortcut audit's joins: it reads a committed run only on the folds it draws again, and says why not."""

import csv

import numpy as np
import pytest

from common.errors import PipelineError
from components.evaluate import shortcut_audit
from components.train import input_pipeline
from components.train import outputs as train_outputs

PARAMS = {"split": "patient", "folds": 3, "seed": 0, "repeats": 2, "labels": "observed", "variant": "original_weights",
          "rebalance": "class_weights", "min_site_patients": 5}


def _examples(patients=24):
    rng = np.random.default_rng(0)
    patient = np.repeat(np.arange(patients), 2).astype(str)
    n = len(patient)
    return input_pipeline.Examples(
        images=np.zeros((n, 2, 2, 3), np.float32), labels=np.repeat(np.arange(patients) % 3 == 0, 2).astype(int),
        label_sources=np.full(n, "observed"), source_ids=np.array([f"img{i:03d}.png" for i in rng.permutation(n)]),
        patients=patient, sha256=np.full(n, "0"), clinical=np.full((n, 5), -1), sites=np.full(n, "Italy"),
        aux=np.zeros((n, 0), np.int64))


def _write_run(run_dir, rows, folds, probabilities=None):
    """A committed run's stored predictions: repeat r, fold k in `repeat_<r>/fold_<k>/predictions.csv`."""
    probabilities = np.full(len(rows["label"]), 0.5) if probabilities is None else probabilities
    for r, per_row in enumerate(folds):
        for k in np.unique(per_row):
            folder = train_outputs.fold_dir(train_outputs.repeat_dir(run_dir, r), int(k))
            folder.mkdir(parents=True)
            with open(folder / train_outputs.PREDICTIONS_CSV, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(train_outputs.PREDICTION_COLUMNS)
                for i in np.flatnonzero(per_row == k):
                    writer.writerow([rows["source_id"][i], rows["patient"][i], rows["label"][i], "observed",
                                     probabilities[i]])


def test_a_run_on_the_folds_drawn_again_is_read(tmp_path):
    rows = shortcut_audit.population(_examples(), PARAMS)
    _write_run(tmp_path, rows, rows["fold"])
    probabilities = shortcut_audit.model_predictions(shortcut_audit.ModelRun("probe", tmp_path, {}), rows)
    assert probabilities.shape == (2, len(rows["label"]))
    assert not np.array_equal(rows["fold"][0], rows["fold"][1])  # the repeats drew other folds


def test_a_run_on_other_folds_is_refused(tmp_path):
    rows = shortcut_audit.population(_examples(), PARAMS)
    moved = rows["fold"].copy()
    moved[1, 0] = (moved[1, 0] + 1) % PARAMS["folds"]  # one image of repeat 1 validated in another fold
    _write_run(tmp_path, rows, moved)
    with pytest.raises(PipelineError, match="repeat 1"):
        shortcut_audit.model_predictions(shortcut_audit.ModelRun("probe", tmp_path, {}), rows)


def test_the_population_keeps_each_patient_in_one_fold_per_repeat():
    rows = shortcut_audit.population(_examples(), PARAMS)
    assert list(rows["source_id"]) == sorted(rows["source_id"])
    for folds in rows["fold"]:
        for patient in np.unique(rows["patient"]):
            assert len(np.unique(folds[rows["patient"] == patient])) == 1


def test_a_site_split_run_is_scored_over_and_within_its_held_out_sites(tmp_path):
    rng = np.random.default_rng(1)
    site_of_fold = ["China", "Germany", "Taiwan"]
    patients = np.arange(30)
    fold = patients % 3
    died = (patients % 5 == 0) & (fold != 2)  # Taiwan's fold: every patient survived
    rows = {"source_id": np.array([f"img{p:02d}.png" for p in patients]), "patient": patients.astype(str),
            "label": died.astype(int)}
    _write_run(tmp_path, rows, fold[None, :], probabilities=died + rng.random(len(patients)))  # ranks a little
    train_outputs.write_summary(tmp_path, {"split": "site", "site_of_fold": site_of_fold})
    ingest_rows = {sid: {"age": str(40 + i), "sex": "MF"[i % 2]} for i, sid in enumerate(rows["source_id"])}
    found = shortcut_audit.leave_one_site_out([shortcut_audit.ModelRun("probe", tmp_path, {})], ingest_rows,
                                              resamples=50, seed=0)
    assert [row["held_out"] for row in found] == ["all sites, pooled", *site_of_fold]
    assert found[0]["status"] == "scored" and "minus_age_sex" in found[0]
    assert found[3]["status"] == "one outcome" and found[3]["patients"] == 10


def test_a_blank_view_is_its_own_stratum_not_pa():
    from components import configs
    assert [shortcut_audit.view_stratum(v) for v in configs.FRONTAL_VIEWS] == ["PA", "AP", "AP", "AP", "AP"]
    assert shortcut_audit.view_stratum("") == shortcut_audit.view_stratum("  ") == shortcut_audit.UNKNOWN_VIEW
