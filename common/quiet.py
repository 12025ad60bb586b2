"""Quiet TensorFlow's C++ start-up notices, so a run's first line is the project's own.

TensorFlow prints oneDNN and CUDA-probing notices (`I0000 ... port.cc`), "failed call to cuInit"
on machines without a GPU, and graph notices such as "NodeDef mentions attribute
use_unbounded_threadpool". TF_CPP_MIN_LOG_LEVEL=3 hides those logged after absl's logging is set
up; the INFO lines printed while TensorFlow's libraries load ignore it, so they are dropped from
stderr during that import. Everything else written to stderr (Python warnings and tracebacks,
any other C++ line) is passed on. Each front door calls `quiet_tensorflow_logs()` before anything
imports TensorFlow. `--tf_logs`, or TF_CPP_MIN_LOG_LEVEL set by the user, leaves the logs alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Iterator, Sequence

from absl import flags
from absl import logging as absl_logging

TF_LOGS_FLAG = "--tf_logs"
# Set beside TF_CPP_MIN_LOG_LEVEL when the level is ours, not the user's: a worker process (ingest's pool, a
# parallel fold) inherits both and quiets its own TensorFlow import too.
OWN_SETTING = "COVID_CXR_QUIET_TF"
flags.DEFINE_bool(TF_LOGS_FLAG.removeprefix("--"), False,
                  "Show TensorFlow's C++ log lines (start-up notices, cuInit), hidden by default.")

# The only lines dropped while TensorFlow loads: absl's pre-initialisation banner and INFO lines.
_LOAD_NOTICE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|I\d{4} \d\d:\d\d:\d+\.\d+ ")


def quiet_tensorflow_logs(argv: Sequence[str] | None = None) -> None:
    """Hide TensorFlow's C++ logs unless `--tf_logs` is given or TF_CPP_MIN_LOG_LEVEL is already set."""
    argv = sys.argv if argv is None else argv
    set_by_user = "TF_CPP_MIN_LOG_LEVEL" in os.environ and not os.environ.get(OWN_SETTING)
    if any(_asks_for_logs(arg) for arg in argv) or set_by_user:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ[OWN_SETTING] = "3", "1"
    with _load_notices_dropped():
        import tensorflow  # noqa: F401  (loaded here, under the filter, once for the process)
    # Its Python side too: INFO lines such as a SavedModel's "Assets written to" (TensorFlow's logger and absl's,
    # which app.run would print; an explicit --verbosity still wins).
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)


def _asks_for_logs(arg: str) -> bool:
    """`--tf_logs` or `--tf_logs=<true>`, as absl reads it (`--notf_logs`, `=false`, `=0`: no)."""
    name, _, value = arg.partition("=")
    return name == TF_LOGS_FLAG and value.lower() not in ("false", "0")


@contextlib.contextmanager
def _load_notices_dropped() -> Iterator[None]:
    """Send fd 2 to a temporary file meanwhile, then pass on every line but the load notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _LOAD_NOTICE.match(line)))
            sys.stderr.flush()
