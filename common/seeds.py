"""Seeds derived from the run's one seed: each epoch (and each fold's test-time augmentation) draws its own,
the same on every machine and after every resume."""

from __future__ import annotations

import numpy as np


def epoch_seed(seed: int, fold: int, phase: str, epoch: int) -> int:
    """A 31-bit seed for one epoch (phase 'frozen', 'unfrozen', 'lr_frozen', ...)."""
    digest = np.random.SeedSequence([seed, fold, sum(map(ord, phase)) * 1009 + len(phase), epoch])
    return int(digest.generate_state(1)[0] & 0x7FFFFFFF)
