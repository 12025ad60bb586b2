"""Files written whole or not at all, content hashes, and the clean-up of killed writers.

Every temporary path starts with `TMP_PREFIX` and ends with its writer (`writer_id()`: pid@host), so a
later run can tell a live writer's file from one a killed run left behind, and machines sharing a
folder (the same `--output_dir` on a shared filesystem) neither reuse nor remove each other's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

TMP_PREFIX = ".tmp-"
HOST = socket.gethostname()


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def writer_id() -> str:
    """`<pid>@<host>`: who writes a temporary file, unique among the machines sharing a folder."""
    return f"{os.getpid()}@{HOST}"


def writer_alive(pid: int, host: str) -> bool | None:
    """Whether process `pid` of `host` still runs; None when `host` is another machine (it cannot be asked)."""
    return _pid_alive(pid) if host == HOST else None


def tmp_sibling(path: Path) -> Path:
    """A temporary name beside `path`, in the same folder (so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{path.name}.{writer_id()}")


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **open_kwargs) -> Iterator[Any]:
    """Open a temporary sibling of `path` for writing; rename it over `path` only if the block
    finishes. On any error the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    tmp = tmp_sibling(path)
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_new(path: Path, text: str, private: bool = False) -> bool:
    """Write `text` to `path` unless a file is there (`private`: readable by the user only): written whole
    to a temporary sibling, then hard-linked into place, which never replaces a file, so of two writers at
    once one wins and the other reads the winner's. On a file system without hard links (exFAT, many
    network shares) the file is created exclusively and written in place. Whether this call wrote it."""
    tmp = tmp_sibling(path)
    try:
        with open(tmp, "w") as handle:
            if private:
                os.chmod(tmp, 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        return _write_exclusive(path, text, 0o600 if private else 0o666)
    finally:
        tmp.unlink(missing_ok=True)


_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


def _write_exclusive(path: Path, text: str, mode: int) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def write_json_atomic(path: Path, payload: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def remove_stale_tmp(folder: Path) -> None:
    """Delete temporary files and folders in `folder` left by writers of this machine that are no longer
    running (another machine's are left alone: whether its writer lives cannot be told from here)."""
    if not Path(folder).is_dir():
        return
    for child in Path(folder).iterdir():
        if not child.name.startswith(TMP_PREFIX):
            continue
        name, _, host = child.name.rpartition("@")
        if host != HOST:
            continue  # another machine's: whether its writer lives cannot be told from here
        pid = name.replace(".", "-").rsplit("-", 1)[-1]
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
