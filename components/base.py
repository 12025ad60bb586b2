"""Artifacts and the cached, atomic execution of a component.

Each component is a function `run(inputs, params, out_dir) -> counts` plus the
modules whose source defines its behaviour. Its output is a folder holding its
files and `artifact.json`: the component, a hash of that source (code
version; docstrings, comments and layout do not count), its parameters, the
fingerprints of its inputs and its counts. The folder name derives from all of
these, so the same inputs and parameters find the existing folder (cached) and
any change makes a new one, which also changes the fingerprint every later
stage sees.

A resumable component (`uses_work_dir`) also gets `<name>/work/`, a folder
that outlives any one run, for its own finer-grained cache and checkpoints.

A component writes into a temporary folder that is renamed into place only
once `artifact.json` is in it: a run killed at any moment leaves no folder
that looks finished, and the next run simply redoes that stage.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import os
import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

RECORD_NAME = "artifact.json"
_TMP_PREFIX = ".tmp-"
WORK_DIR_NAME = "work"


class PipelineError(Exception):
    """An error the user can act on; runners print it without a traceback."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A finished output folder and its record."""

    path: Path
    record: Mapping[str, Any]

    @property
    def fingerprint(self) -> str:
        return self.record["fingerprint"]

    @property
    def counts(self) -> Mapping[str, Any]:
        return self.record.get("counts", {})

    @classmethod
    def load(cls, path: Path) -> "Artifact":
        record_path = Path(path) / RECORD_NAME
        if not record_path.is_file():
            raise PipelineError(f"{path} is not a finished artifact (no {RECORD_NAME})")
        return cls(Path(path), json.loads(record_path.read_text()))


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
    """What a component is: its name, its function and the code it depends on."""

    name: str
    run: Callable[[Mapping[str, Artifact], Mapping[str, Any], Path], Mapping[str, Any]]
    code: Sequence[ModuleType]
    summary: Callable[[Artifact], str] | None = None  # one line for the runner to print
    # Long, resumable components (training) also get a persistent work folder shared by all
    # their cache keys, `<output_root>/<name>/work`, called as run(inputs, params, out_dir, work_dir).
    uses_work_dir: bool = False
    _code_version: str = dataclasses.field(init=False, repr=False, compare=False, default="")

    def __post_init__(self):
        # Hashed once, when the component's module is imported: the key then names the code this process
        # runs, even if the files are edited while a long run is going on.
        digest = hashlib.sha256()
        for module in self.code:
            digest.update(module.__name__.encode())
            digest.update(_behaviour(inspect.getsource(module)).encode())
        object.__setattr__(self, "_code_version", digest.hexdigest()[:16])

    def code_version(self) -> str:
        return self._code_version


def _behaviour(source: str) -> str:
    """The syntax tree of `source` without docstrings: what the code does, so that correcting a
    docstring or a comment does not throw away hours of cached training."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                node.body = node.body[1:]
    return ast.dump(tree)


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a sibling temporary file, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def cache_key(spec: ComponentSpec, inputs: Mapping[str, Artifact], params: Mapping[str, Any]) -> str:
    payload = {
        "component": spec.name,
        "code_version": spec.code_version(),
        "parameters": params,
        "inputs": {name: artifact.fingerprint for name, artifact in sorted(inputs.items())},
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def remove_stale_tmp_dirs(component_root: Path) -> None:
    """Delete temporary folders left by runs that were killed."""
    if not component_root.is_dir():
        return
    for child in component_root.iterdir():
        if not child.name.startswith(_TMP_PREFIX):
            continue
        pid = child.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue  # another live run is writing it
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def execute(
    spec: ComponentSpec,
    inputs: Mapping[str, Artifact],
    params: Mapping[str, Any],
    output_root: Path,
) -> tuple[Artifact, bool]:
    """Run `spec` unless an artifact for the same inputs and parameters exists.

    Returns the artifact and whether it was reused from cache.
    """
    key = cache_key(spec, inputs, params)
    component_root = Path(output_root) / spec.name
    final = component_root / key[:16]
    if (final / RECORD_NAME).is_file():
        return Artifact.load(final), True

    component_root.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp_dirs(component_root)
    if final.exists():  # a folder without a record cannot come from us; never trust it
        shutil.rmtree(final)
    tmp = component_root / f"{_TMP_PREFIX}{key[:16]}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    started = time.time()
    try:
        if spec.uses_work_dir:
            counts = spec.run(inputs, params, tmp, component_root / WORK_DIR_NAME)
        else:
            counts = spec.run(inputs, params, tmp)
        record = {
            "component": spec.name,
            "code_version": spec.code_version(),
            "parameters": dict(params),
            "inputs": {name: {"fingerprint": a.fingerprint, "path": str(a.path)} for name, a in sorted(inputs.items())},
            "counts": dict(counts),
            "fingerprint": key,
            "seconds": round(time.time() - started, 3),
        }
        write_json_atomic(tmp / RECORD_NAME, record)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Artifact.load(final), False
