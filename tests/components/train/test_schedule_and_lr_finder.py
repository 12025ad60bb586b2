import math

import numpy as np
import pytest

from components.train import lr_finder, outputs, schedule


def test_one_cycle_matches_fastai_endpoints():
    cycle = schedule.OneCycle(total_steps=100, lr_max=1e-3)
    lr0, mom0 = cycle(0)
    assert lr0 == pytest.approx(1e-3 / 25) and mom0 == pytest.approx(0.95)
    lr_peak, mom_peak = cycle(25)
    assert lr_peak == pytest.approx(1e-3) and mom_peak == pytest.approx(0.85)
    lr_end, mom_end = cycle(100)
    assert lr_end == pytest.approx(1e-3 / 1e5) and mom_end == pytest.approx(0.95)
    lrs = [cycle(i)[0] for i in range(101)]
    assert np.argmax(lrs) == 25 and all(np.diff(lrs[25:]) <= 0)


def test_valley_picks_inside_the_longest_descent():
    lrs = np.logspace(-7, 1, 60)
    x = np.log10(lrs)
    losses = 1.0 + 0.5 * np.tanh(-(x + 3)) + np.where(x > -1, (x + 1) ** 2 * 3, 0)  # falls around 1e-3, explodes past 1e-1
    lr, idx = lr_finder.valley(lrs, losses)
    assert 1e-5 < lr < 1e-1
    assert losses[idx] < losses[0]


def test_sweep_grows_exponentially_smooths_and_stops_on_divergence():
    def step(lr):
        return 1.0 if lr < 1e-2 else 1.0 + 1e4 * lr
    curve = lr_finder.sweep(step, num_steps=50, start_lr=1e-7, end_lr=10)
    assert len(curve["lrs"]) < 50  # stopped early
    ratios = np.diff(np.log(curve["lrs"]))
    assert np.allclose(ratios, ratios[0])
    assert curve["losses"][0] == pytest.approx(1.0)  # debiased
    assert math.isfinite(lr_finder.suggest(curve))


def test_plot_writes_a_png(tmp_path):
    curve = lr_finder.sweep(lambda lr: 1 / (1 + lr * 1e3) + lr, num_steps=30)
    lr_finder.suggest(curve)
    assert outputs.plot_lr_curves({"fold 0, body frozen": curve}, tmp_path / "lr.png", "test") == tmp_path / "lr.png"
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    other = lr_finder.sweep(lambda lr: 2 / (1 + lr * 1e2) + lr, num_steps=30)
    lr_finder.suggest(other)
    outputs.plot_lr_curves({"fold 0": curve, "fold 1": other}, tmp_path / "all.png", "every fold")
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"
