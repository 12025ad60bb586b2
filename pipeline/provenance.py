"""What made a result: the code version a run reads (the git commit, marked when the tracked files differ
from it) and the machine its timings were measured on.

One check for the report's provenance (`pipeline/run.py`) and the study's (`pipeline/study.py`).
Untracked files do not count: run outputs and scratch files sit in the tree without changing the code.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from components import configs

DIRTY_SUFFIX = " (with uncommitted changes)"


def git_commit(root: Path = configs.REPO_ROOT) -> str:
    """HEAD's commit ("unknown" outside a git checkout), plus `DIRTY_SUFFIX` when tracked files are modified."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True)
    return (commit.stdout.strip() or "unknown") + (DIRTY_SUFFIX if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    """What the timings were measured on: CPU model, cores, GPUs."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    import tensorflow as tf  # only when asked: the GPU list needs it

    gpus = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "arch": platform.machine()}
