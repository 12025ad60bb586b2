"""One training step for the default, mirrored and multi-worker strategies (subprocesses, CPU only)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.train import strategy

WORKER = Path(__file__).with_name("strategy_worker.py")


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _weights(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory):
    """{"MODE-MODEL": its arrays} of the runs that fit in one process (one TensorFlow start for four)."""
    out = tmp_path_factory.mktemp("strategies")
    specs = ["default:plain", "mirrored:plain", "mirrored:bn", "mirrored:fused", "default:aux", "mirrored:aux"]
    subprocess.run([sys.executable, str(WORKER), str(out), *specs], check=True, timeout=900)
    return {spec.replace(":", "-"): _weights(out / f"{spec.replace(':', '-')}.npz") for spec in specs}


def test_mirrored_two_cpu_replicas_match_the_default_strategy(one_process_runs):
    default_run, mirrored = one_process_runs["default-plain"], one_process_runs["mirrored-plain"]
    assert int(default_run["replicas"]) == 1
    assert int(mirrored["replicas"]) == 2 and int(mirrored["fed"]) == int(default_run["fed"]) == 3 * 64
    np.testing.assert_allclose(mirrored["losses"], default_run["losses"], rtol=1e-4)
    for key in default_run:
        if key.startswith("w"):
            np.testing.assert_allclose(mirrored[key], default_run[key], rtol=1e-4, atol=1e-5)


def test_auxiliary_heads_under_two_mirrored_cpu_replicas_match_the_default_strategy(one_process_runs):
    """The masked losses (survival unknown on some rows, each target on others) sum over replicas to the global
    batch's: the same losses and updates as one replica."""
    default_run, mirrored = one_process_runs["default-aux"], one_process_runs["mirrored-aux"]
    assert int(mirrored["replicas"]) == 2 and len([k for k in mirrored if k.startswith("w")]) == 6  # conv, logit, heads
    np.testing.assert_allclose(mirrored["losses"], default_run["losses"], rtol=1e-4)
    assert not np.allclose(default_run["losses"], one_process_runs["default-plain"]["losses"])
    for key in default_run:
        if key.startswith("w"):
            np.testing.assert_allclose(mirrored[key], default_run[key], rtol=1e-4, atol=1e-5)


def test_fused_batch_norm_under_two_mirrored_cpu_replicas_trains_as_keras_batch_norm(one_process_runs):
    keras_bn, fused = one_process_runs["mirrored-bn"], one_process_runs["mirrored-fused"]
    assert int(fused["replicas"]) == 2 and sorted(fused) == sorted(keras_bn)
    np.testing.assert_allclose(fused["losses"], keras_bn["losses"], rtol=1e-4)
    for key in keras_bn:  # weights, each replica's synchronised moving statistics, and the recomputed ones
        if key.startswith(("w", "bn", "recomputed_bn")):
            np.testing.assert_allclose(fused[key], keras_bn[key], rtol=1e-3, atol=2e-4, err_msg=key)  # other kernels, Adam


def test_two_local_workers_end_with_identical_trainable_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": ""}
        (tmp_path / f"w{index}").mkdir()
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / f"w{index}"), "multi_worker:bn"],
                                      env=env))
    try:
        for proc in procs:
            assert proc.wait(timeout=900) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    a, b = (_weights(tmp_path / f"w{index}" / "multi_worker-bn.npz") for index in range(2))
    assert int(a["replicas"]) == 2 and int(a["fed"]) == 3 * 64  # global batch 64 over two workers
    trainable = [k for k in a if k.startswith("w")]
    assert trainable
    for key in trainable:
        np.testing.assert_array_equal(a[key], b[key])
    # Unsynchronised batch norm: each worker keeps the moving statistics of its own half-batches...
    assert any(not np.array_equal(a[k], b[k]) for k in a if k.startswith("bn"))
    # ...until they are recomputed from all the training images, on each worker alike.
    recomputed = [k for k in a if k.startswith("recomputed_bn")]
    assert len(recomputed) == 2
    for key in recomputed:
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], a[key.removeprefix("recomputed_")])


def test_precision_and_strategy_names():
    assert strategy.resolve_precision("fp32") == "fp32"
    assert strategy.resolve_precision("auto") in ("fp32", "bf16")
    with pytest.raises(ValueError):
        strategy.resolve_precision("fp16")
    with pytest.raises(ValueError):
        strategy.get_strategy("tpu")


def test_bf16_only_on_gpus_that_compute_it():
    ampere, turing = ("A100", (8, 0)), ("T4", (7, 5))
    assert strategy.choose_precision("auto", [ampere, ("H200", (9, 0))], cpu_bf16=False) == "bf16"
    assert strategy.choose_precision("auto", [ampere, turing], cpu_bf16=True) == "fp32"
    assert strategy.choose_precision("auto", [("unknown", None)], cpu_bf16=True) == "fp32"
    assert strategy.choose_precision("auto", [], cpu_bf16=True) == "bf16"
    assert strategy.choose_precision("auto", [], cpu_bf16=False) == "fp32"
    assert strategy.choose_precision("fp32", [ampere], cpu_bf16=False) == "fp32"
    with pytest.raises(ValueError, match="T4 \\(compute capability 7.5\\)"):
        strategy.choose_precision("bf16", [turing], cpu_bf16=False)
