"""fastai's learning-rate finder: exponential sweep, smoothed loss, 'valley' suggestion.

The sweep trains from `start_lr` (1e-7) to `end_lr` (10) exponentially over
`num_steps` steps on TRAINING batches only (never validation), keeps an
exponentially smoothed, debiased loss (beta 0.98) and stops once it exceeds
4x its minimum. The caller restores the weights afterwards, as fastai does.
The default is fastai's 100 steps. Shorter sweeps were measured and
rejected (`bench/results/lr_sweep_length.txt`): on this data a 30-step
sweep's suggestion moves with the batches drawn (median 0.2-0.9 decades from
the 100-step one's, up to 1.2), where two 100-step sweeps agree within a
factor of ~2; the valley rule needs the resolution.

`valley` is fastai's rule: the longest decreasing subsequence of the smoothed
loss (over the curve without its first 10% of steps and last 5 points), and
the rate about half-way down it: index start + int(len/3) + int(len/6),
exactly as fastai computes it. Its figure is drawn with the fold's other outputs
(`outputs.plot_lr_curves`).
"""

from __future__ import annotations

import math
from typing import Callable


def sweep(train_step: Callable[[float], float], num_steps: int, start_lr: float = 1e-7, end_lr: float = 10.0,
          beta: float = 0.98, stop_div: bool = True) -> dict:
    """Run `train_step(lr) -> loss` with exponentially growing lr; return the curve."""
    lrs, raw, smooth = [], [], []
    average, best = 0.0, math.inf
    for i in range(num_steps):
        lr = start_lr * (end_lr / start_lr) ** (i / max(1, num_steps - 1))
        loss = float(train_step(lr))
        average = beta * average + (1 - beta) * loss
        smoothed = average / (1 - beta ** (i + 1))
        lrs.append(lr)
        raw.append(loss)
        smooth.append(smoothed)
        if not math.isfinite(smoothed) or (stop_div and smoothed > 4 * best):
            break
        best = min(best, smoothed)
    return {"lrs": lrs, "losses": smooth, "raw_losses": raw, "num_steps": num_steps}


def valley(lrs, losses) -> tuple[float, int]:
    """fastai's `valley` suggestion on an (already trimmed) curve: (lr, index)."""
    n = len(losses)
    if n < 2:
        return float(lrs[0]), 0
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx]), idx


def suggest(result: dict) -> float:
    """The valley learning rate of a sweep, trimmed as fastai trims (first 10% of steps, last 5 points)."""
    skip = result["num_steps"] // 10
    lrs, losses = result["lrs"][skip:-5], result["losses"][skip:-5]
    if len(lrs) < 2:  # a very short sweep: use the whole curve
        lrs, losses = result["lrs"], result["losses"]
    lr, idx = valley(lrs, [x if math.isfinite(x) else math.inf for x in losses])
    result["suggestion"] = lr
    return lr
