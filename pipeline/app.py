"""`python -m pipeline.app --model=M`: the page for a person trying the model (`serving/page.py`), on this machine.

    python -m pipeline.app --model=runs                                     # the last run's export
    python -m pipeline.app --model=runs/serving/covid_cxr_mortality_demo    # a TF Serving model folder
    python -m pipeline.app --model=M --host=0.0.0.0 --auth_file=users.txt   # other machines: a login is required
    python -m pipeline.app --model=M --validations=validation/site_a,validation/site_b  # shown beside development

`--model` is read as the scoring job reads it (`pipeline.score.resolve_model`). `--validations` are folders
`python -m pipeline.validate` wrote; each must have validated this very model (the SavedModel's sha256), or the
app does not start (`serving/validations.py`). The page listens on 127.0.0.1:7860 (`--host`, `--port`); a host
other than loopback is refused without `--auth_file` (lines `username:password`, readable by its owner alone).
Offline: analytics off, no share link, system fonts.
Uploads above `--max_upload_mb` are refused, each request's uploads are removed when it ends, and the log names
sizes and outcomes, never files. Exit status 2 with a one-line error for bad flags.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before Gradio is imported: it reads this at import

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # before any import below loads TensorFlow

import functools
import logging
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from absl import app, flags

from components import configs
from pipeline import score  # defines --model, read the same way here
from serving import validations as site_validations

FLAGS = flags.FLAGS
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; anything but loopback needs --auth_file.")
flags.DEFINE_integer("port", 7860, "Port to listen on.", lower_bound=1, upper_bound=65535)
flags.DEFINE_string("auth_file", None, "A file of `username:password` lines, readable by its owner alone: the "
                    "login the page asks for.")
flags.DEFINE_integer("max_upload_mb", 50, "Largest upload the page takes, in MB.", lower_bound=1)
flags.DEFINE_list("validations", [], "Output folders of `python -m pipeline.validate` on this model (comma "
                  "separated), shown under the page's validation evidence; a folder of another model is refused.")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class AppError(score.ScoreError):
    """Bad flags; printed as one line, exit status 2."""


def read_auth_file(path: Path) -> list[tuple[str, str]]:
    """(username, password) pairs; refuses a file others can read, as ssh refuses a key."""
    if not path.is_file():
        raise AppError(f"--auth_file {path} does not exist")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AppError(f"--auth_file {path} can be read by others: chmod 600 it")
    pairs = [tuple(line.split(":", 1)) for line in path.read_text().splitlines() if line.strip()]
    if not pairs or any(len(pair) != 2 or not all(pair) for pair in pairs):
        raise AppError(f"--auth_file {path}: every line must be username:password")
    return pairs


def login(host: str, auth_file: str | None) -> list[tuple[str, str]] | None:
    """The login Gradio asks for: none on loopback unless given, required anywhere else."""
    if auth_file:
        return read_auth_file(Path(auth_file))
    if host not in LOOPBACK:
        raise AppError(f"--host {host} is reachable from other machines: give --auth_file so the page asks for a login")
    return None


def external_validations(folders: Sequence[str], model_sha256: str) -> list[site_validations.SiteValidation]:
    """The `--validations` folders read and checked against the served model; a folder refused is one line."""
    if not folders:
        return []
    try:
        return site_validations.read(folders, model_sha256)
    except site_validations.ValidationRefused as refused:
        raise AppError(f"--validations: {refused}") from None


def launch(model: str, host: str, port: int, auth_file: str | None, max_upload_mb: int, block: bool = True,
           validations: Sequence[str] = ()):
    """Start the page; returns the Gradio app (with `block=False`, for tests and the benchmark)."""
    saved_model_dir = score.resolve_model(model)
    auth = login(host, auth_file)
    model_sha256 = score.model_sha256(saved_model_dir)
    sites = external_validations(validations, model_sha256)
    if block:  # before anything is loaded: SIGTERM while the model loads still removes the temporary folder
        signal.signal(signal.SIGTERM, _stop)
    temp_root = Path(tempfile.mkdtemp(prefix="covid-cxr-app-"))
    try:
        # Gradio's own cache (uploads before the page takes them, the CSV downloads) goes inside, removed at exit.
        os.environ["GRADIO_TEMP_DIR"] = str(temp_root / "gradio")
        from serving import explain, page

        served = score.ServedModel(saved_model_dir, model_sha256, score.load_signature(saved_model_dir))
        blocks = page.build(explain.Explainer(saved_model_dir, configs.FRONTAL_VIEWS),
                            functools.partial(score_every_file, served), temp_root, max_upload_mb, sites)
        blocks.queue(default_concurrency_limit=1)
        blocks.launch(server_name=host, server_port=port, share=False, auth=auth, max_file_size=f"{max_upload_mb}mb",
                      theme=page.theme(), show_error=True, prevent_thread_lock=True, quiet=True, footer_links=[])
        blocks.temp_root = temp_root
        shown = f"; external validations of it: {', '.join(site.site or 'unnamed' for site in sites)}" if sites else ""
        print(f"The page: {blocks.local_url} (model {saved_model_dir}{shown}). Research use only; Ctrl+C stops it.",
              flush=True)
        if block:
            blocks.block_thread()  # until Ctrl+C or SIGTERM
    except BaseException:
        shutil.rmtree(temp_root, ignore_errors=True)
        raise
    if block:
        shutil.rmtree(temp_root, ignore_errors=True)
    return blocks


def score_every_file(served: score.ServedModel, images: Path, output: Path) -> None:
    """The batch tab's scoring: every file of the folder gets a row, those that are not images with their reason
    (`pipeline.score`'s `list_images` would skip them, and the page promises a row per file); the model loaded once
    at launch."""
    score.score([(p.name, p) for p in sorted(images.iterdir())], served, output, progress=False)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's start-up checks of its own URL, line by line
    try:
        if not FLAGS.model:
            raise AppError("--model is required")
        launch(FLAGS.model, FLAGS.host, FLAGS.port, FLAGS.auth_file, FLAGS.max_upload_mb,
               validations=FLAGS.validations)
    except score.ScoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _stop(signum, frame):
    """SIGTERM (a service manager, `timeout`) stops the page as Ctrl+C does, so its temporary folder goes too."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    app.run(main)
