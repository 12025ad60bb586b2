"""One trainer per fold among processes and machines sharing a work folder.

`claim(fold_dir)` holds `<fold_dir>.lock` while a fold trains: the lock file names its holder
(pid, host, a random token) and is created whole (written to a temporary name, then hard-linked
into place: `link(2)` fails when the name exists, on local disks and NFS alike, and a reader never
sees a half-written holder). The holder touches it every `HEARTBEAT_S`. A lock is stale when its
holder was on this machine and is gone, or when it has not been touched for `STALE_AFTER_S` (a
holder on another machine that died or lost the filesystem); a waiter then removes it, under a
second lock (`.break`) so that two waiters cannot both remove it and one of them a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from common import files

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
POLL_S = 1.0


def lock_path(fold_dir: Path) -> Path:
    return Path(fold_dir).with_name(Path(fold_dir).name + ".lock")


def _create(path: Path, holder: dict) -> bool:
    """Create `path` holding `holder` if it does not exist; whether it was created."""
    return files.write_new(path, json.dumps(holder))


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _is_stale(path: Path, holder: dict) -> bool:
    if files.writer_alive(holder["pid"], holder["host"]) is False:
        return True
    try:
        return time.time() - path.stat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def _break_if_stale(path: Path, holder: dict) -> None:
    breaker = path.with_name(path.name + ".break")
    if not _create(breaker, {"pid": os.getpid(), "host": files.HOST}):
        with contextlib.suppress(FileNotFoundError):  # a breaker killed within its few lines of work
            if time.time() - breaker.stat().st_mtime > STALE_AFTER_S:
                breaker.unlink()
        return
    try:
        if _holder(path) == holder:  # still the stale holder, not a new one
            path.unlink(missing_ok=True)
    finally:
        breaker.unlink(missing_ok=True)


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)


@contextlib.contextmanager
def claim(fold_dir: Path, wait: bool, log: Callable[[str], None] = print) -> Iterator[bool]:
    """Hold the fold's lock for the block; yields False at once, without it, if `wait` is off and
    another live process holds it. With `wait` it returns only holding the lock."""
    path = lock_path(fold_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.remove_stale_tmp(path.parent)  # a lock's temporary file left by a writer killed before linking it
    mine = {"pid": os.getpid(), "host": files.HOST, "token": uuid.uuid4().hex}
    announced = False
    while not _create(path, mine):
        holder = _holder(path)
        if holder is not None and _is_stale(path, holder):
            log(f"{Path(fold_dir).name}: lock of pid {holder['pid']} on {holder['host']} is stale; taking it over")
            _break_if_stale(path, holder)
            continue
        if not wait:
            yield False
            return
        if holder is not None and not announced:
            log(f"{Path(fold_dir).name}: waiting for pid {holder['pid']} on {holder['host']}, which trains it")
            announced = True
        time.sleep(POLL_S)
    stop = threading.Event()
    beating = threading.Thread(target=_heartbeat, args=(path, stop), daemon=True)
    beating.start()
    try:
        yield True
    finally:
        stop.set()
        beating.join()
        if _holder(path) == mine:
            path.unlink()
