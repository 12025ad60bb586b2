import importlib.util
import json
import multiprocessing
import os

import pytest

from common import files
from components import base

CALLS = []


def _produce(inputs, params, out_dir):
    CALLS.append(params["value"])
    (out_dir / "value.txt").write_text(str(params["value"]) + "".join(a.fingerprint for a in inputs.values()))
    if params.get("fail"):
        raise RuntimeError("component failed half-way")
    return {"value": params["value"]}


SPEC = base.ComponentSpec(name="toy", run=_produce)


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_same_inputs_and_params_reuse_the_artifact(tmp_path):
    first, cached_first = base.execute(SPEC, {}, {"value": 1}, tmp_path)
    second, cached_second = base.execute(SPEC, {}, {"value": 1}, tmp_path)
    assert (cached_first, cached_second) == (False, True)
    assert first.path == second.path and CALLS == [1]
    record = json.loads((first.path / base.RECORD_NAME).read_text())
    assert record["component"] == "toy" and record["parameters"] == {"value": 1}
    assert record["counts"] == {"value": 1} and record["code_version"] == SPEC.code_version()


def _import_module(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_code_version_is_the_code_imported_not_the_file_edited_since(tmp_path):
    source = tmp_path / "stage.py"
    source.write_text("def run(inputs, params, out_dir):\n    return {}\n")
    module = _import_module(source)
    spec = base.ComponentSpec(name="stage", run=module.run, code_root=tmp_path)
    imported = spec.code_version()
    source.write_text("def run(inputs, params, out_dir):\n    return {'edited': 1}\n")
    os.utime(source, (0, 0))  # a new mtime, so no cached source can hide the edit
    assert spec.code_version() == imported  # a long run keeps the key of the code it runs
    edited = _import_module(source)
    assert base.ComponentSpec(name="stage", run=edited.run, code_root=tmp_path).code_version() != imported


def _code_version_of(folder, source):
    folder.mkdir()
    (folder / "stage.py").write_text(source)
    module = _import_module(folder / "stage.py")  # the module name is part of the key
    return base.ComponentSpec(name="stage", run=module.run, code_root=folder).code_version()


def test_docstrings_comments_and_layout_do_not_change_the_code_version(tmp_path):
    plain = "def run(inputs, params, out_dir):\n    return {'rows': 1}\n"
    documented = ('"""A stage."""\n\n# why it is so\ndef run(inputs, params, out_dir):\n'
                  '    """Count the rows; measured 1.3x faster."""\n    return {"rows": 1}  # one\n')
    changed = "def run(inputs, params, out_dir):\n    return {'rows': 2}\n"
    assert _code_version_of(tmp_path / "plain", plain) == _code_version_of(tmp_path / "documented", documented)
    assert _code_version_of(tmp_path / "changed", changed) != _code_version_of(tmp_path / "plain2", plain)


def test_a_changed_parameter_or_input_makes_a_new_artifact(tmp_path):
    one, _ = base.execute(SPEC, {}, {"value": 1}, tmp_path)
    two, cached = base.execute(SPEC, {}, {"value": 2}, tmp_path)
    assert not cached and one.path != two.path
    downstream_of_one, _ = base.execute(SPEC, {"up": one}, {"value": 3}, tmp_path)
    downstream_of_two, cached = base.execute(SPEC, {"up": two}, {"value": 3}, tmp_path)
    assert not cached and downstream_of_one.fingerprint != downstream_of_two.fingerprint


def test_a_failed_run_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError):
        base.execute(SPEC, {}, {"value": 1, "fail": True}, tmp_path)
    assert list((tmp_path / "toy").iterdir()) == []


def test_a_leftover_temporary_folder_of_a_dead_run_is_cleaned(tmp_path):
    dead = tmp_path / "toy" / f".tmp-0123456789abcdef-999999999@{files.HOST}"
    dead.mkdir(parents=True)
    (dead / "value.txt").write_text("half")
    artifact, cached = base.execute(SPEC, {}, {"value": 1}, tmp_path)
    assert not cached and not dead.exists()
    assert (artifact.path / "value.txt").read_text() == "1"


def test_a_folder_without_record_is_not_trusted(tmp_path):
    key = base.cache_key(SPEC, {}, {"value": 1})
    fake = tmp_path / "toy" / key[:16]
    fake.mkdir(parents=True)
    (fake / "value.txt").write_text("stale")
    artifact, cached = base.execute(SPEC, {}, {"value": 1}, tmp_path)
    assert not cached and (artifact.path / "value.txt").read_text() == "1"


def test_a_process_that_finishes_second_takes_the_first_ones_artifact(tmp_path):
    """Two processes sharing an output folder run the same stage: the second rename finds the first's folder."""
    def run_while_another_process_finishes_first(inputs, params, out_dir):
        other = multiprocessing.get_context("fork").Process(target=base.execute, args=(SPEC, {}, params, tmp_path))
        other.start()
        other.join()
        assert other.exitcode == 0
        (out_dir / "value.txt").write_text("second")
        return {"value": params["value"]}

    racing = base.ComponentSpec(name="toy", run=run_while_another_process_finishes_first)
    assert racing.code_version() == SPEC.code_version()  # same module: same key
    artifact, cached = base.execute(racing, {}, {"value": 1}, tmp_path)
    assert cached and (artifact.path / "value.txt").read_text() == "1"  # the other process's, whole
    assert [p.name for p in (tmp_path / "toy").iterdir()] == [artifact.path.name]  # no temporary folder left
