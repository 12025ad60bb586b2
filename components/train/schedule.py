"""fastai's one-cycle schedule (`fit_one_cycle`), per optimisation step.

Learning rate: cosine from lr_max/div (div=25) up to lr_max over the first
pct_start (0.25) of the steps, then cosine down to lr_max/div_final (1e5).
Adam's beta_1 ("momentum") does the opposite: 0.95 -> 0.85 -> 0.95. These are
fastai's defaults, which the study used. Discriminative learning rates
(`lr_max=slice(lo, hi)` in fastai) are multipliers on lr_max per parameter
group (see `fold.py`), each group following this same curve.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class OneCycle:
    total_steps: int
    lr_max: float
    pct_start: float = 0.25
    div: float = 25.0
    div_final: float = 1e5
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)

    def __call__(self, step: int) -> tuple[float, float]:
        """(learning rate, beta_1) at optimisation step `step` (0-based)."""
        pos = step / max(1, self.total_steps)
        if pos < self.pct_start:
            p = pos / self.pct_start
            return (_cos(self.lr_max / self.div, self.lr_max, p), _cos(self.moms[0], self.moms[1], p))
        p = (pos - self.pct_start) / (1 - self.pct_start)
        return (_cos(self.lr_max, self.lr_max / self.div_final, p), _cos(self.moms[1], self.moms[2], p))


def _cos(start: float, end: float, pos: float) -> float:
    """fastai's SchedCos."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2
