"""tf.distribute strategy and numeric precision for the machine at hand.

`auto`: MirroredStrategy over the visible GPUs, else the default strategy (one
CPU device). `mirrored` forces MirroredStrategy (on CPU: over the logical CPU
devices), `multi_worker` is MultiWorkerMirroredStrategy configured by the
TF_CONFIG environment variable; it must be created before TensorFlow runs
any op, so `pipeline/run.py` calls `get_strategy` first thing. The global
batch (64) is the same whatever the number of replicas.

Precision `bf16` is Keras' mixed_bfloat16 policy (bfloat16 compute, float32
variables; the logit layer stays float32; no loss scaling needed); `auto`
picks it where the hardware computes bfloat16 natively: NVIDIA GPUs of compute
capability 8.0 or more (Ampere on; older ones emulate it slowly or not at all)
and CPUs with AVX512-BF16 (or AMX), else float32. Asking for `bf16` on a GPU
below 8.0 is refused with its name and capability.
"""

from __future__ import annotations

import contextlib
import os
from typing import Sequence

import keras
import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
PRECISIONS = ("auto", "fp32", "bf16")

_cached: dict[str, tf.distribute.Strategy] = {}


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"strategy {name!r} not in {STRATEGIES}")
    if name not in _cached:
        if name == "multi_worker":
            if "TF_CONFIG" not in os.environ:
                raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
            _cached[name] = tf.distribute.MultiWorkerMirroredStrategy()
        elif name == "mirrored" or (name == "auto" and tf.config.list_physical_devices("GPU")):
            _cached[name] = tf.distribute.MirroredStrategy()
        else:
            _cached[name] = tf.distribute.get_strategy()
    return _cached[name]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one worker that writes outputs (every single-worker strategy)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0
                                                     and "chief" not in resolver.cluster_spec().as_dict())


def cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16_MIN_COMPUTE_CAPABILITY = (8, 0)


def gpu_compute_capabilities() -> list[tuple[str, tuple[int, int] | None]]:
    """(name, compute capability) of each visible GPU; None where TensorFlow does not say."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        found.append((details.get("device_name", gpu.name), tuple(capability) if capability else None))
    return found


def choose_precision(name: str, gpus: Sequence[tuple[str, tuple[int, int] | None]], cpu_bf16: bool) -> str:
    """The precision to train in, given the GPUs (name, capability) and whether the CPU has bf16."""
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r} not in {PRECISIONS}")
    old = [f"{gpu} (compute capability {'.'.join(map(str, cc)) if cc else 'unknown'})" for gpu, cc in gpus
           if cc is None or tuple(cc) < BF16_MIN_COMPUTE_CAPABILITY]
    if name == "bf16" and old:
        raise ValueError(f"--precision=bf16 needs GPUs of compute capability >= 8.0; {', '.join(old)} is older: "
                         "use --precision=fp32")
    if name != "auto":
        return name
    if gpus:
        return "fp32" if old else "bf16"
    return "bf16" if cpu_bf16 else "fp32"


def resolve_precision(name: str) -> str:
    gpus = gpu_compute_capabilities()
    return choose_precision(name, gpus, cpu_has_bf16() if not gpus else False)


@contextlib.contextmanager
def precision_policy(precision: str):
    """Build models inside this block; the global Keras policy is restored afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
