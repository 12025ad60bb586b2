"""The code version a run reads: the git commit, marked when the tracked files differ from it.

One check for the report's provenance (`pipeline/run.py`) and the study's (`pipeline/study.py`).
Untracked files do not count: run outputs and scratch files sit in the tree without changing the code.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from components import configs

DIRTY_SUFFIX = " (with uncommitted changes)"


def git_commit(root: Path = configs.REPO_ROOT) -> str:
    """HEAD's commit ("unknown" outside a git checkout), plus `DIRTY_SUFFIX` when tracked files are modified."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True)
    return (commit.stdout.strip() or "unknown") + (DIRTY_SUFFIX if dirty.stdout.strip() else "")
