"""The one way the benchmarks time things, and print ratios against a peer measured in the same run.

Standard library only: `bench/bench_models.py` imports it in the torch venv's child process too.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence


def call_seconds(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 3) -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls (tracing, caches)."""
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return timings


def seconds_per_call(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 3,
                     stat: Callable[[Sequence[float]], float] = statistics.median) -> float:
    """`stat` (the median unless told) of `call_seconds`. `min` keeps the fastest call: other
    processes on a shared machine only ever add time. `statistics.fmean` is total time / repeats,
    `sum` the total."""
    return stat(call_seconds(fn, warmup=warmup, repeats=repeats))


def format_ratio(value: float, peer: float, digits: int = 2, unit: str = "x") -> str:
    """`value / peer` as printed beside its peer: `format_ratio(3, 2)` is "1.50x"."""
    return f"{value / peer:.{digits}f}{unit}"
