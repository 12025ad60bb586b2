"""A finished training run's lower bound: the seconds its training images take at the model-only peak.

Standard library only, and no flags: tests import it beside the pipeline's flags. A time goal below the
bound on a host cannot be reached there by any input pipeline or training loop, only by training on
fewer images (`bench/bench_train.py --mode=summary` prints it against `--goal_s`).
"""

from __future__ import annotations


def seconds_at_peak(summary: dict, peaks: dict[str, float]) -> dict[str, tuple[int, float]]:
    """{timing phase: (images trained, seconds at the model-only peak)} of a finished fine-tuning run.

    `peaks` is {"frozen": img/s, "unfrozen": img/s}; each LR sweep and each phase's epochs trains
    steps x global batch images at its body state's peak. Phases that do not train (validation,
    batch-norm statistics) keep their measured seconds: no training peak bounds them."""
    folds, params, timings = summary["folds"], summary["params"], summary["timings_s"]
    if any("lr_steps_run" not in fold for fold in folds):
        raise ValueError(f"folds without 'lr_steps_run' (method {params.get('method')!r}): the bound covers "
                         f"fine-tuning runs with LR sweeps")
    bound = {}
    for phase, seconds in timings.items():
        body = phase.removeprefix("lr_sweep_")
        if body not in peaks:
            bound[phase] = (0, seconds)
            continue
        if phase.startswith("lr_sweep_"):
            images = sum(fold["lr_steps_run"][body] * fold["global_batch"] for fold in folds)
        else:
            images = sum(params[f"epochs_{body}"] * fold["steps_per_epoch"] * fold["global_batch"] for fold in folds)
        bound[phase] = (images, images / peaks[body])
    return bound
