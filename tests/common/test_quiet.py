"""A front door's first line is the project's own; `--tf_logs` brings TensorFlow's back; nothing else is hidden."""

import os
import re
import subprocess
import sys

from common import quiet
from components import configs

TF_CPP_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ |absl::InitializeLog")


def _ingest_sample(out_dir, *extra):
    """The run's output lines in the order printed (stdout unbuffered, stderr merged into it)."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--stop_after=ingest", f"--output_dir={out_dir}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=configs.REPO_ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"}, timeout=900)
    assert result.returncode == 0, result.stdout
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_the_first_line_a_run_prints_is_the_projects_own(tmp_path):
    lines = _ingest_sample(tmp_path / "out")
    assert lines[0].startswith("note: the embedded sample"), lines[:3]
    assert not [line for line in lines if TF_CPP_LINE.search(line)]


def test_tf_logs_brings_tensorflows_lines_back(tmp_path):
    lines = _ingest_sample(tmp_path / "out", "--tf_logs")
    assert [line for line in lines if TF_CPP_LINE.search(line)], lines[:3]


def test_only_the_load_notices_are_dropped(capfd):
    with quiet._load_notices_dropped():
        os.write(2, b"I0000 00:00:1796541991.749027    8521 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"E0000 00:00:1796541995.942136    6643 some.cc:52] a real error\n")
        print("Traceback (most recent call last): a Python error", file=sys.stderr)
    assert sorted(capfd.readouterr().err.splitlines()) == [
        "E0000 00:00:1796541995.942136    6643 some.cc:52] a real error",
        "Traceback (most recent call last): a Python error"]


def test_tf_logs_is_read_as_absl_reads_it():
    assert quiet._asks_for_logs("--tf_logs") and quiet._asks_for_logs("--tf_logs=true")
    assert not quiet._asks_for_logs("--tf_logs=false") and not quiet._asks_for_logs("--notf_logs")


def test_a_worker_of_a_quiet_run_is_quiet_too():
    """A worker process (ingest's pool) inherits the level a quiet run set, and still drops TensorFlow's load
    notices when its own import of TensorFlow comes; a level the user set stays the user's."""
    code = "from common import quiet; quiet.quiet_tensorflow_logs([]); import tensorflow"
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", quiet.OWN_SETTING)}

    def stderr(**extra):
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              cwd=configs.REPO_ROOT, timeout=900).stderr
    assert not TF_CPP_LINE.search(stderr(TF_CPP_MIN_LOG_LEVEL="3", **{quiet.OWN_SETTING: "1"}))
    assert TF_CPP_LINE.search(stderr(TF_CPP_MIN_LOG_LEVEL="0"))


def test_tensorflows_python_info_lines_stay_hidden_in_an_absl_program(tmp_path):
    """Writing a SavedModel (as export does) logs INFO lines through TensorFlow's and absl's Python loggers."""
    script = tmp_path / "save.py"
    script.write_text(
        "from common.quiet import quiet_tensorflow_logs\nquiet_tensorflow_logs()\n"
        "from absl import app\nimport tensorflow as tf\n"
        "def main(argv):\n    m = tf.Module()\n    m.v = tf.Variable(1.0)\n"
        f"    tf.saved_model.save(m, {str(tmp_path / 'model')!r})\n    print('saved')\n"
        "app.run(main)\n")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=configs.REPO_ROOT, env={**env, "PYTHONPATH": str(configs.REPO_ROOT)},
                            timeout=900)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 0 and lines == ["saved"], lines[:5]
