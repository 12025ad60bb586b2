"""The import graph behind the cache keys and the layer order (common/imports.py)."""

import json
import subprocess
import sys

import pytest

from common import imports
from components import base
from pipeline.pipeline import create_pipeline
from components.configs import PipelineConfig

STAGES = [node.spec for node in create_pipeline(PipelineConfig()).nodes]

# Records every `import` statement a module body executes, even of modules already loaded.
_RECORD_IMPORTS = """
import builtins, json, sys
seen = set()
real_import = builtins.__import__
def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__")
    if importer:
        seen.add((importer, name, tuple(fromlist or ()), level))
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = recording_import
import pipeline.run, pipeline.score, pipeline.study
print(json.dumps(sorted(seen)))
"""


def test_the_layers_are_respected():
    assert imports.upward_imports() == []


def test_an_upward_import_is_caught(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "common" / "low.py").write_text("def f():\n    from components import high\n")
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "__init__.py").write_text("")
    (tmp_path / "components" / "high.py").write_text("from common import low\n")
    assert imports.upward_imports(tmp_path) == ["common.low -> components", "common.low -> components.high"]


def test_the_static_graph_holds_every_import_python_runs():
    """Each in-repo import executed while loading the front doors is one the cache keys know about."""
    out = subprocess.run([sys.executable, "-c", _RECORD_IMPORTS], cwd=imports.REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    missing = []
    for importer, name, fromlist, level in json.loads(out):
        if imports.module_path(importer) is None or level:
            continue
        targets = [m for m in [name, *(f"{name}.{x}" for x in fromlist)] if imports.module_path(m) is not None]
        known = imports.direct_imports(importer)
        missing += [f"{importer} -> {t}" for t in targets if t != importer and t not in known]
    assert missing == []


@pytest.mark.parametrize("spec", STAGES, ids=lambda spec: spec.name)
def test_editing_any_module_a_stage_imports_changes_its_cache_key(spec):
    modules = spec.code_modules()
    assert spec.run.__module__ in modules

    def read(name, edited=None):
        source = imports.module_path(name).read_text()
        return source + "\n_edited = 1\n" if name == edited else source

    assert base.code_version(modules, read) == spec.code_version()
    unchanged = [m for m in modules if base.code_version(modules, lambda n, m=m: read(n, m)) == spec.code_version()]
    assert unchanged == []


def test_the_shared_preprocessing_is_in_the_keys_of_the_stages_that_run_it():
    by_name = {spec.name: set(spec.code_modules()) for spec in STAGES}
    for stage in ("train", "evaluate", "export"):
        assert {"images.preprocessing", "models.resnet18_backbone"} <= by_name[stage], stage
    assert "images.image_io" in by_name["ingest"] and "tfrecords.writer" in by_name["tfrecords"]


def test_function_level_and_relative_imports_are_followed(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from . import b\n")
    (package / "b.py").write_text("import pkg.c as c\n")
    (package / "c.py").write_text("x = 1\n")
    assert imports.import_closure("pkg.a", tmp_path) == ["pkg", "pkg.a", "pkg.b", "pkg.c"]
