"""The one git check behind the report's and the study's code version, and the machine (pipeline/provenance.py)."""

import os
import subprocess

import tensorflow as tf

from pipeline import provenance


def _git(folder, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_commit_is_marked_only_when_tracked_files_changed(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "commit", "-qm", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert provenance.git_commit(tmp_path) == head
    (tmp_path / "scratch.txt").write_text("an output, not code\n")
    assert provenance.git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_commit(tmp_path) == head + " (with uncommitted changes)"


def test_outside_a_checkout_the_commit_is_unknown(tmp_path):
    assert provenance.git_commit(tmp_path) == "unknown"


def test_the_report_and_the_study_use_the_same_check():
    from pipeline import run, study
    assert run.git_commit is study.git_commit is provenance.git_commit


def test_the_machine_names_its_cpu_and_cores():
    described = provenance.machine()
    assert described["cores"] == os.cpu_count()
    assert len(described["gpus"]) == len(tf.config.list_physical_devices("GPU"))
    with open("/proc/cpuinfo") as handle:
        assert described["cpu"] in handle.read()
