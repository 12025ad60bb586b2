"""Folds under a lock: processes racing on one fold train it once and all read the same result."""

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time

import pytest

from common import files
from components import configs
from components.train import component, fold, fold_lock

TINY = fold.TrainParams(arch="resnet18_stage3", image_size=32, folds=2, epochs_frozen=1, epochs_unfrozen=0,
                        lr_finder_steps=4, batch_size=8, precision="fp32", strategy="default")


def _write_holder(fold_dir, pid, host, age_s=0.0):
    path = fold_lock.lock_path(fold_dir)
    path.write_text(json.dumps({"pid": pid, "host": host, "token": "x"}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_a_live_holder_keeps_the_fold_and_a_dead_or_silent_one_loses_it(tmp_path):
    fold_dir = tmp_path / "fold-a"
    lock = _write_holder(fold_dir, os.getppid(), files.HOST)  # pytest's parent: alive
    with fold_lock.claim(fold_dir, wait=False, log=lambda _: None) as claimed:
        assert not claimed
    assert json.loads(lock.read_text())["pid"] == os.getppid()

    for pid, host, age in ((999999999, files.HOST, 0.0),  # dead, on this machine
                           (1, "other-host.example", fold_lock.STALE_AFTER_S + 60)):  # another machine, silent
        _write_holder(fold_dir, pid, host, age)
        seen = []
        with fold_lock.claim(fold_dir, wait=False, log=seen.append) as claimed:
            assert claimed and json.loads(lock.read_text())["pid"] == os.getpid()
        assert "is stale" in seen[0] and not lock.exists()

    _write_holder(fold_dir, 1, "other-host.example", age_s=5.0)  # another machine, recently heard from
    with fold_lock.claim(fold_dir, wait=False, log=lambda _: None) as claimed:
        assert not claimed


def race_on_fold_zero(tfrecords, fold_dir, out):
    """One racer: fold 0 of the tiny config in `fold_dir`, its result and log to `out`."""
    p = TINY
    strategy, precision = component._start(p)
    examples, plan = component._plan(p, precision, tfrecords, fold_dir.parent)
    (r, k, train, val, _), log = plan[0], []
    results = component._train_folds(p, strategy, precision, len(examples), [(r, k, train, val, fold_dir)],
                                     on_epoch=lambda r, k, row: None, log=log.append)
    out.write_text(json.dumps({"result": results[0, 0], "log": log}))


def test_two_processes_racing_on_one_fold_train_it_once(sample_tfrecords, tmp_path):
    fold_dir = tmp_path / "work" / "fold-0"
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"racer{i}.json" for i in range(2)]
    racers = [context.Process(target=race_on_fold_zero, args=(sample_tfrecords, fold_dir, out)) for out in outs]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=900)
    assert [racer.exitcode for racer in racers] == [0, 0]
    reports = [json.loads(out.read_text()) for out in outs]
    trained = [any("LR finder (frozen)" in line for line in r["log"]) for r in reports]
    reused = [any("reused finished fold" in line for line in r["log"]) for r in reports]
    assert sorted(trained) == [False, True] and reused == [not t for t in trained]
    assert reports[0]["result"] == reports[1]["result"]
    assert json.loads((fold_dir / fold.DONE).read_text()) == reports[0]["result"]
    assert not fold_lock.lock_path(fold_dir).exists()


def test_parallel_folds_trains_the_folds_in_two_processes(tmp_path):
    """The parent waits until its helper holds a fold, so each trains one, however long the helper takes to start."""
    command = [sys.executable, "-m", "pipeline.run", f"--output_dir={tmp_path}", "--stop_after=train",
               "--parallel_folds=2", "--arch=resnet18_stage3", "--image_size=32", "--folds=2", "--epochs_frozen=3",
               "--epochs_unfrozen=3", "--lr_finder_steps=4", "--batch_size=8", "--precision=fp32"]
    run = subprocess.run(command, cwd=configs.REPO_ROOT, capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    # A helper's line may follow the parent's progress bar on the same terminal line.
    trainers = {re.search(r"\[helper pid \d+\]", line)[0] if "[helper pid" in line else "parent"
                for line in log.splitlines() if "LR finder (frozen)" in line}
    assert len(trainers) == 2 and "parent" in trainers  # one fold each
    (summary,) = (tmp_path / "train").glob("*/train_summary.json")
    assert [f["fold"] for f in json.loads(summary.read_text())["folds"]] == [0, 1]
    assert not list((tmp_path / "train" / "work").glob("*.lock"))


def test_parallel_folds_with_a_multi_worker_strategy_is_refused_by_name(tmp_path):
    import dataclasses

    from common.errors import PipelineError

    params = dataclasses.asdict(fold.TrainParams(parallel_folds=2, strategy="multi_worker"))
    with pytest.raises(PipelineError, match="--parallel_folds > 1 with --strategy=multi_worker"):
        component.run({}, params, tmp_path / "out", tmp_path / "work")
