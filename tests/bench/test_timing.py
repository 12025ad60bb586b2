"""The benchmarks' shared timing helper (bench/timing.py)."""

import statistics

from bench import timing


def _clock(monkeypatch, durations):
    """A fake perf_counter under which the timed calls last `durations`, in order."""
    now, calls = [0.0], []

    def perf_counter():
        return now[0]

    def fn():
        calls.append(len(calls))
        now[0] += durations[len(calls) - 1]

    monkeypatch.setattr(timing.time, "perf_counter", perf_counter)
    return fn, calls


def test_warm_up_calls_are_run_but_not_timed(monkeypatch):
    fn, calls = _clock(monkeypatch, [9.0, 9.0, 3.0, 1.0, 2.0])
    assert timing.call_seconds(fn, warmup=2, repeats=3) == [3.0, 1.0, 2.0]
    assert len(calls) == 5


def test_the_median_unless_told(monkeypatch):
    for stat, expected in ((None, 2.0), (min, 1.0), (statistics.fmean, 2.0), (sum, 6.0)):
        fn, _ = _clock(monkeypatch, [9.0, 3.0, 1.0, 2.0])
        kwargs = {"stat": stat} if stat else {}
        assert timing.seconds_per_call(fn, warmup=1, repeats=3, **kwargs) == expected


def test_ratios_print_against_their_peer():
    assert timing.format_ratio(3, 2) == "1.50x"
    assert timing.format_ratio(0.9512, 1, digits=3, unit="") == "0.951"
    assert f"{timing.format_ratio(1.3245, 1):>12}" == f"{1.3245:>11.2f}x"  # bench_models' column
