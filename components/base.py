"""Artifacts and the cached, atomic execution of a component.

Each component is a function `run(inputs, params, out_dir) -> counts`; the
modules whose source defines its behaviour are the in-repo import closure of
the function's module. Its output is a folder holding its
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
that looks finished, and the next run simply redoes that stage. Processes
sharing one output folder (machines with the same `--output_dir`) may run a
stage side by side: the first rename wins and the others take its artifact.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from common import files, imports
from common.errors import PipelineError

RECORD_NAME = "artifact.json"
WORK_DIR_NAME = "work"


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
    """What a component is: its name and its function. The code it depends on is the in-repo import
    closure of the function's module (`common.imports`), so no dependency can be left out."""

    name: str
    run: Callable[[Mapping[str, Artifact], Mapping[str, Any], Path], Mapping[str, Any]]
    summary: Callable[[Artifact], str] | None = None  # one line for the runner to print
    # Long, resumable components (training) also get a persistent work folder shared by all
    # their cache keys, `<output_root>/<name>/work`, called as run(inputs, params, out_dir, work_dir).
    uses_work_dir: bool = False
    code_root: Path = imports.REPO_ROOT  # where the modules of the closure are read from
    _code_version: str = dataclasses.field(init=False, repr=False, compare=False, default="")

    def __post_init__(self):
        # Hashed once, when the component's module is imported: the key then names the code this process
        # runs, even if the files are edited while a long run is going on.
        object.__setattr__(self, "_code_version", code_version(
            self.code_modules(), lambda name: imports.module_path(name, self.code_root).read_text()))

    def code_modules(self) -> list[str]:
        return imports.import_closure(self.run.__module__, self.code_root)

    def code_version(self) -> str:
        return self._code_version


def code_version(module_names: Sequence[str], read_source: Callable[[str], str]) -> str:
    """Hash of the behaviour of the named modules; `read_source(name)` gives each one's text."""
    digest = hashlib.sha256()
    for name in sorted(module_names):
        digest.update(name.encode())
        digest.update(_behaviour(read_source(name)).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=512)
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


def cache_key(spec: ComponentSpec, inputs: Mapping[str, Artifact], params: Mapping[str, Any]) -> str:
    payload = {
        "component": spec.name,
        "code_version": spec.code_version(),
        "parameters": params,
        "inputs": {name: artifact.fingerprint for name, artifact in sorted(inputs.items())},
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


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
    files.remove_stale_tmp(component_root)
    if final.exists() and not (final / RECORD_NAME).is_file():  # a folder without a record cannot come from us
        shutil.rmtree(final)
    tmp = component_root / f"{files.TMP_PREFIX}{key[:16]}-{files.writer_id()}"
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
        files.write_json_atomic(tmp / RECORD_NAME, record)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / RECORD_NAME).is_file():
                raise
            # Another process sharing the output folder finished the same key first: same inputs, same result.
            shutil.rmtree(tmp)
            return Artifact.load(final), True
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Artifact.load(final), False
