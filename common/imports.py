"""The project's own import graph, read from the source files.

A stage's cache key hashes the code of every in-repo module it can run, and
that set is derived here, never listed by hand: the modules named by every
`import` statement (including those inside functions) of the stage's module,
followed transitively, together with the `__init__` of each package on the way
(Python runs those too). The same graph is what the layer test checks.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def module_path(name: str, root: Path = REPO_ROOT) -> Path | None:
    """The file of module `name` under `root` (a package's `__init__.py`), or None if it is not ours."""
    base = Path(root).joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def direct_imports(name: str, root: Path = REPO_ROOT) -> set[str]:
    """In-repo modules that module `name` imports anywhere in its source (and their packages)."""
    path = module_path(name, root)
    if path is None:
        raise ValueError(f"{name} is not a module under {root}")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = {module for imported in _imported_names(path.read_text(), package, str(path))
             for module in _with_parents(imported) if module_path(module, root) is not None}
    found.discard(name)
    return found


@functools.lru_cache(maxsize=1024)
def _imported_names(source: str, package: str, filename: str) -> tuple[str, ...]:
    """Every name an `import` in `source` may bind a module to. Each stage's closure walks the same
    modules: cached on the text, each is parsed once per process (an edited file is parsed anew)."""
    names = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(anchor + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names += [origin] + [f"{origin}.{alias.name}" for alias in node.names]
    return tuple(names)


def import_closure(name: str, root: Path = REPO_ROOT) -> list[str]:
    """`name`, its packages and every in-repo module reachable from it by imports, sorted."""
    seen: set[str] = set()
    todo = [m for m in _with_parents(name) if module_path(m, root) is not None]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(direct_imports(module, root) - seen)
    return sorted(seen)


# The floors of the project, lowest first. A module may import its own package and the floors below
# it, never a floor above nor another package of its own floor. bench/, tests/ and tools/ stand on top.
LAYERS = (
    ("common",),                          # errors, atomic files, hashing, this import graph
    ("images", "tfrecords", "models"),    # image reading + shared preprocessing; TFRecord schema + writer; networks
    ("sources",),                         # data folders (the upstream collection, a manifest) as rows for ingest
    ("serving",),                         # the served graph and TF Serving's folder layout
    ("components",),                      # the stages, their configs and their outputs
    ("pipeline",),                        # wiring, runners and the other front doors (study, score, TFDS builder)
)


def project_modules(root: Path = REPO_ROOT) -> list[str]:
    """Every module of the layered packages."""
    names = []
    for package in (p for floor in LAYERS for p in floor):
        for path in sorted((Path(root) / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def upward_imports(root: Path = REPO_ROOT) -> list[str]:
    """'a -> b' for each import that breaks the floor order; empty when the layering holds."""
    floor_of = {package: level for level, floor in enumerate(LAYERS) for package in floor}
    broken = []
    for name in project_modules(root):
        own = name.split(".")[0]
        for target in sorted(direct_imports(name, root)):
            other = target.split(".")[0]
            if other != own and (other not in floor_of or floor_of[other] >= floor_of[own]):
                broken.append(f"{name} -> {target}")
    return broken
