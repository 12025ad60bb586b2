"""TF Serving's model folder: `<serving_dir>/<model_name>/<version>/`, versions growing integers.

TF Serving loads only integer-named folders (the largest, by default) and
polls for new ones. `push` copies a SavedModel into a hidden temporary folder
beside the versions and renames it to the next number in one step, so the
server never sees a half-written version, a killed push leaves only a hidden
folder (removed by the next push), and an existing version is never touched.
No TensorFlow here: pushing is file work.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from common import files
from common.errors import PipelineError

TMP_PREFIX = ".tmp-push-"  # common.files' ".tmp-<...>-<pid>@<host>" convention: stale ones are found by it
SAVED_MODEL_PB = "saved_model.pb"
# The TF Serving image the docs name: built on TensorFlow 2.21, the version that writes the graph (an older server
# may not know every op in it). README.md and docs/serving.md use exactly this tag (tests/serving/test_docs.py).
SERVING_IMAGE = "tensorflow/serving:2.21.0"


def existing_versions(model_root: Path) -> list[int]:
    """The version numbers in a model folder, ascending; anything not an integer folder is ignored."""
    model_root = Path(model_root)
    if not model_root.is_dir():
        return []
    return sorted(int(child.name) for child in model_root.iterdir() if child.name.isdigit() and child.is_dir())


def latest_version(model_root: Path) -> Path | None:
    """The folder TF Serving would serve: the largest version holding a SavedModel."""
    for version in reversed(existing_versions(model_root)):
        if (Path(model_root) / str(version) / SAVED_MODEL_PB).is_file():
            return Path(model_root) / str(version)
    return None


def push(saved_model_dir: Path, serving_dir: Path, model_name: str) -> tuple[int, Path]:
    """Copy the SavedModel to `<serving_dir>/<model_name>/<largest version + 1>/`, atomically."""
    if not model_name or "/" in model_name or "\\" in model_name or model_name.startswith("."):
        raise PipelineError(f"export: model name {model_name!r} must be one plain folder name")
    model_root = Path(serving_dir) / model_name
    model_root.mkdir(parents=True, exist_ok=True)
    files.remove_stale_tmp(model_root)  # copies left by killed pushes (".tmp-push-<dead pid>@<host>")
    tmp = model_root / f"{TMP_PREFIX}{files.writer_id()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        shutil.copytree(saved_model_dir, tmp)
        while True:
            version = max(existing_versions(model_root), default=0) + 1
            final = model_root / str(version)
            try:
                # rename(2) is atomic and refuses a non-empty target: if another push took this
                # number first, count again. No empty or partial numbered folder is ever visible.
                os.rename(tmp, final)
            except OSError as error:
                if error.errno in (errno.EEXIST, errno.ENOTEMPTY) or final.exists():
                    continue
                raise
            return version, final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
