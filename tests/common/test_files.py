import errno
import json
import os
import stat

import pytest

from common import files


def test_atomic_open_replaces_only_when_the_block_finishes(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with files.atomic_open(path) as handle:
            handle.write("half")
            raise RuntimeError("killed half-way")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["table.csv"]
    with files.atomic_open(path, "wb") as handle:
        handle.write(b"new\n")
    assert path.read_bytes() == b"new\n" and os.listdir(tmp_path) == ["table.csv"]


def test_write_json_atomic_replaces_whole_files(tmp_path):
    path = tmp_path / "x.json"
    files.write_json_atomic(path, {"a": 1})
    files.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}


def test_stale_temporary_files_of_dead_writers_go_live_ones_stay(tmp_path):
    dead_file = tmp_path / f"{files.TMP_PREFIX}x.json.999999999@{files.HOST}"
    dead_dir = tmp_path / f"{files.TMP_PREFIX}0123456789abcdef-999999999@{files.HOST}"
    live = tmp_path / f"{files.TMP_PREFIX}y.json.{os.getppid()}@{files.HOST}"
    # Another machine sharing the folder: its pid means nothing here, so its file stays.
    other_machine = tmp_path / f"{files.TMP_PREFIX}z.json.999999999@other-host.example"
    kept = tmp_path / "result.json"
    for path in (dead_file, live, other_machine, kept):
        path.write_text("{}")
    dead_dir.mkdir()
    files.remove_stale_tmp(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_machine.name, kept.name])


def test_temporary_names_carry_pid_and_host(tmp_path):
    tmp = files.tmp_sibling(tmp_path / "x.json")
    assert tmp.parent == tmp_path and tmp.name == f"{files.TMP_PREFIX}x.json.{os.getpid()}@{files.HOST}"
    assert files.writer_alive(os.getpid(), files.HOST) is True
    assert files.writer_alive(999999999, files.HOST) is False
    assert files.writer_alive(os.getpid(), "other-host.example") is None


@pytest.mark.parametrize("links", [True, False], ids=["hard links", "no hard links (exFAT, SMB)"])
def test_write_new_writes_once_and_never_replaces(tmp_path, monkeypatch, links):
    if not links:
        def no_link(source, target):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    path = tmp_path / "key"
    assert files.write_new(path, "first\n", private=True)
    assert not files.write_new(path, "second\n")
    assert path.read_text() == "first\n" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]
