"""bench/peak_bound.py: the images each phase of a finished run trained, at the model-only peak."""

import json
import pathlib

import pytest

from bench.peak_bound import seconds_at_peak

RESULTS = pathlib.Path(__file__).parents[2] / "results"


def _summary():
    """Two folds whose sweeps stopped at different steps, one with two steps an epoch."""
    fold = {"global_batch": 64}
    return {"params": {"epochs_frozen": 5, "epochs_unfrozen": 30, "method": "fine_tune"},
            "timings_s": {"lr_sweep_frozen": 50.0, "lr_sweep_unfrozen": 200.0, "frozen": 8.0, "unfrozen": 90.0,
                          "validation": 12.5},
            "folds": [dict(fold, lr_steps_run={"frozen": 89, "unfrozen": 88}, steps_per_epoch=1),
                      dict(fold, lr_steps_run={"frozen": 91, "unfrozen": 87}, steps_per_epoch=2)]}


def test_each_phase_trains_its_steps_at_its_body_states_peak():
    bound = seconds_at_peak(_summary(), {"frozen": 160.0, "unfrozen": 64.0})
    assert bound["lr_sweep_frozen"] == (180 * 64, 180 * 64 / 160.0)
    assert bound["lr_sweep_unfrozen"] == (175 * 64, 175 * 64 / 64.0)
    assert bound["frozen"] == (5 * 3 * 64, 5 * 3 * 64 / 160.0)
    assert bound["unfrozen"] == (30 * 3 * 64, 30 * 3 * 64 / 64.0)
    assert bound["validation"] == (0, 12.5)


def test_a_real_run_s_bound_is_below_its_seconds():
    """The committed patient-split run at the peaks measured beside it (bench/results/train_summary.txt):
    no phase can have run faster than its bound."""
    summary = json.loads((RESULTS / "patient_split/original_weights_resnet18_patient/train_summary.json").read_text())
    bound = seconds_at_peak(summary, {"frozen": 123.7, "unfrozen": 56.3})
    assert set(bound) == set(summary["timings_s"])
    for phase, (images, seconds) in bound.items():
        assert seconds <= summary["timings_s"][phase], phase
    sweep_images = bound["lr_sweep_unfrozen"][0]
    assert 5 * 80 * 64 <= sweep_images <= 5 * 100 * 64  # fastai's 100 steps, stopped at 4x the best loss


def test_a_run_without_lr_sweeps_is_refused_by_name():
    summary = json.loads((RESULTS / "linear_probe_patient/original_weights_resnet18+linear_probe_patient/"
                          "train_summary.json").read_text())
    with pytest.raises(ValueError, match="lr_steps_run.*'linear_probe'"):
        seconds_at_peak(summary, {"frozen": 100.0, "unfrozen": 50.0})
