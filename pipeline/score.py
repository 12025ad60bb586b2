"""`python -m pipeline.score`: score a folder, glob or CSV of chest X-rays with an exported model.

    python -m pipeline.score --model=serving/covid_cxr_mortality --images=path/to/folder --output=scores.csv
    python -m pipeline.score --model=runs --csv=metadata.csv --images_dir=images --output=scores.csv
    python -m pipeline.score --model=runs --images=folder --output=scores.csv --shard=2/4   # -> scores-00002-of-00004.csv

`--model` is a SavedModel folder, a TF Serving model folder
(`<serving_dir>/<model_name>`: its largest version is used), a pipeline
output folder (`runs/`: the export stage of the last run) or an export artifact.

Every file is first read with `images.image_io.load_standard_image`, the
loader ingest used: CMYK, 16-bit, palette and RGBA images become the 8-bit RGB
training saw, DICOM files are rendered by `images.dicom.render` (the standard's
grayscale pipeline) and sent as gray PNG, and unreadable files get a named
reason (`not_an_image: ...`, `truncated_or_corrupt: ...`, `dicom_undecodable: ...`).
This happens in the reader threads (`--workers`), beside the model's batches.
A folder's DICOM files are found by content, so PACS exports named by their
UID without a suffix are scored too. The rest go in batches through the SavedModel's
`serving_default` signature (so the decode and preprocessing are the served
ones). The output CSV has one row per input file (per CSV row with --csv), in
input order: `filename, probability_of_death, class, error`.

Shards: `--shard=i/n` scores the i-th of n contiguous blocks of the inputs
(files sorted by name, or CSV rows in order) into `<output stem>-0000i-of-0000n.csv`, so the
shards' rows, concatenated in shard order, are the unsharded output row for row.

Resume: rows go to `<output>.partial`, a batch at a time, appended, flushed to disk, then
counted in the record `<output>.json` (model and inputs sha256, rows, bytes), written
atomically. A killed run leaves a record naming only whole batches; the next run cuts the
partial file back to the bytes it names (dropping any half-written row) and scores only the
rest. The partial file is renamed to `<output>` once every row is in, so `<output>` is never
half written. An output made by another model or from other inputs is refused, named. Exit
status 0 when it scored what it could, 2 with a one-line error for bad flags.
"""

from __future__ import annotations

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # first: before any import below loads TensorFlow

import concurrent.futures
import csv
import glob
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from absl import app, flags

from common import files
from common.errors import PipelineError
from serving import contract, push

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "SavedModel folder, TF Serving model folder (latest version), pipeline "
                    "output folder, or export artifact.")
flags.DEFINE_string("images", None, "A folder (its image files: .jpg .jpeg .png ..., and DICOM files by content, "
                    "with or without a suffix) or a glob pattern.")
flags.DEFINE_string("csv", None, "A metadata-style CSV with a filename column (instead of --images).")
flags.DEFINE_string("filename_column", "filename", "The CSV column naming each image file.")
flags.DEFINE_string("images_dir", None, "Where the CSV's files are (default: an images/ folder beside the CSV).")
flags.DEFINE_string("output", "scores.csv", "The CSV to write.")
# Not --batch_size: pipeline.run defines that one, and absl refuses a flag defined twice in one process.
flags.DEFINE_integer("images_per_batch", 32, "Images per call of the model.", lower_bound=1)
flags.DEFINE_integer("workers", 4, "Threads reading and checking image files.", lower_bound=1)
flags.DEFINE_string("shard", "0/1", "i/n: score only the i-th of n contiguous blocks of the inputs, into "
                    "<output stem>-0000i-of-0000n.csv.")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".dcm", ".dicom")
COLUMNS = ("filename", contract.PROBABILITY, contract.CLASS, contract.ERROR)
SAVED_MODEL_PB = "saved_model.pb"


class ScoreError(PipelineError):
    """Bad flags or inputs; printed as one line, exit status 2."""


# ---------------------------------------------------------------- model
def resolve_model(path: str | Path) -> Path:
    """The SavedModel folder that `path` names (see the module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise ScoreError(f"--model {path} is not a folder")
    if (path / SAVED_MODEL_PB).is_file():
        return path
    latest = push.latest_version(path)
    if latest is not None:
        return latest
    if (path / "export.json").is_file() and (path / "saved_model" / SAVED_MODEL_PB).is_file():
        return path / "saved_model"
    run_record = path / "latest_run.json"
    if run_record.is_file():
        export_dir = json.loads(run_record.read_text()).get("artifacts", {}).get("export")
        if not export_dir:
            raise ScoreError(f"--model {path}: its last run did not reach the export stage")
        return resolve_model(export_dir)
    raise ScoreError(f"--model {path} holds no SavedModel ({SAVED_MODEL_PB}), no numbered versions, "
                     f"no export artifact and no latest_run.json")


# ---------------------------------------------------------------- inputs
def list_images(images: str) -> list[tuple[str, Path]]:
    """(name for the output, path) of every image in a folder, or of every file a glob matches."""
    from images import dicom
    folder = Path(images)
    if folder.is_dir():
        # DICOM by content too, for the files PACS exports name by their UID (`1.2.840....`, no suffix).
        files = sorted(p for p in folder.iterdir() if not p.name.startswith(".")
                       and (p.suffix.lower() in IMAGE_SUFFIXES or (p.is_file() and dicom.is_dicom_file(p))))
        return [(p.name, p) for p in files]
    matches = sorted(Path(m) for m in glob.glob(images, recursive=True))
    return [(str(p), p) for p in matches if not p.is_dir()]


def list_csv(csv_path: Path, images_dir: Path | None, column: str) -> list[tuple[str, Path | Exception]]:
    """(filename, path or the reason it cannot be used) for every row of a metadata-style CSV."""
    from images import image_io
    if not csv_path.is_file():
        raise ScoreError(f"--csv {csv_path} does not exist")
    images_dir = images_dir or csv_path.parent / "images"
    if not images_dir.is_dir():
        raise ScoreError(f"--images_dir {images_dir} is not a folder")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if column not in (reader.fieldnames or []):
                raise ScoreError(f"--csv {csv_path} has no {column!r} column (columns: {reader.fieldnames})")
            names = [row[column] or "" for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ScoreError(f"--csv {csv_path}: {error}") from None
    entries: list[tuple[str, Path | Exception]] = []
    for name in names:
        try:
            entries.append((name, image_io.resolve_inside(images_dir, name)))
        except image_io.ImageRejected as error:
            entries.append((name, error))
    return entries


def _read(entry: tuple[str, Path | Exception]) -> tuple[str, bytes | None, str]:
    """(name, standard encoded bytes or None, error)."""
    from images import image_io
    name, path = entry
    if isinstance(path, Exception):
        return name, None, str(path)
    try:
        return name, image_io.load_standard_image(path).encoded, ""
    except image_io.ImageRejected as error:
        return name, None, str(error)
    except OSError as error:
        return name, None, f"unreadable: {error}"


# ---------------------------------------------------------------- shards
def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` -> (i, n), 0 <= i < n."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()) or not int(index) < int(count):
        raise ScoreError(f"--shard {text!r} is not i/n with 0 <= i < n")
    return int(index), int(count)


def shard_entries(entries: Sequence, index: int, count: int) -> list:
    """The `index`-th of `count` contiguous blocks, sizes differing by at most one."""
    return list(entries[index * len(entries) // count:(index + 1) * len(entries) // count])


def shard_output(output: Path, index: int, count: int) -> Path:
    return output if count == 1 else output.with_name(f"{output.stem}-{index:05d}-of-{count:05d}{output.suffix}")


# ---------------------------------------------------------------- resume
def record_path(output: Path) -> Path:
    return output.with_name(output.name + ".json")


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def model_sha256(saved_model_dir: Path) -> str:
    """The SavedModel's identity: every file's path and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(saved_model_dir).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(saved_model_dir)}\0{files.sha256_file(path)}\0".encode())
    return digest.hexdigest()


def inputs_sha256(entries: Sequence[tuple[str, object]]) -> str:
    return hashlib.sha256("\0".join(name for name, _ in entries).encode()).hexdigest()


def _resume_point(output: Path, identity: dict) -> tuple[int, int]:
    """(rows, bytes) of `output`'s partial file already committed by a run with the same identity."""
    record = record_path(output)
    if not record.is_file():
        if output.exists() or partial_path(output).exists():
            raise ScoreError(f"--output {output} exists without its record {record.name}, so which model made it "
                             f"cannot be told: delete it or give another --output")
        return 0, 0
    made = json.loads(record.read_text())
    if made["model_sha256"] != identity["model_sha256"]:
        raise ScoreError(f"--output {output} was made by another model ({made['model']}, sha256 "
                         f"{made['model_sha256'][:12]}), not {identity['model']} (sha256 "
                         f"{identity['model_sha256'][:12]}): give another --output, or delete {output.name} and "
                         f"{record.name} to score again")
    if made["inputs_sha256"] != identity["inputs_sha256"]:
        raise ScoreError(f"--output {output} was made from other inputs ({made['entries']} files, sha256 "
                         f"{made['inputs_sha256'][:12]}), not these {identity['entries']} ({identity['inputs_sha256'][:12]}): "
                         f"give another --output or --shard, or delete {output.name} and {record.name}")
    on_disk = output if output.exists() else partial_path(output)
    if (on_disk.stat().st_size if on_disk.exists() else 0) < made["bytes"]:
        raise ScoreError(f"--output {output}: {on_disk.name} is shorter than {record.name} says; delete both")
    return made["rows"], made["bytes"]


def _csv_bytes(rows) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue().encode("utf-8")


# ---------------------------------------------------------------- scoring
def load_signature(saved_model_dir: Path) -> Callable:
    import tensorflow as tf
    loaded = tf.saved_model.load(str(saved_model_dir))
    if contract.DEFAULT_SIGNATURE not in loaded.signatures:
        raise ScoreError(f"{saved_model_dir} has no {contract.DEFAULT_SIGNATURE!r} signature")
    function = loaded.signatures[contract.DEFAULT_SIGNATURE]
    function._loaded = loaded  # keep the variables alive as long as the function
    return function


@dataclass(frozen=True)
class ServedModel:
    """A SavedModel loaded once, with its identity: a process that scores many batches (the page's batch tab)
    hashes and loads it once, not per request."""
    saved_model_dir: Path
    sha256: str
    signature: Callable

    @classmethod
    def load(cls, saved_model_dir: Path) -> "ServedModel":
        return cls(Path(saved_model_dir), model_sha256(saved_model_dir), load_signature(saved_model_dir))


def _batches(entries, batch_size: int, workers: int) -> Iterator[list[tuple[str, bytes | None, str]]]:
    """Read batch i+1 in threads while batch i is scored."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending = None
        for start in range(0, len(entries) + batch_size, batch_size):
            chunk = entries[start:start + batch_size]
            submitted = [pool.submit(_read, e) for e in chunk] if chunk else None
            if pending is not None:
                yield [f.result() for f in pending]
            pending = submitted
            if pending is None:
                break


def score(entries: Sequence[tuple[str, Path | Exception]], model: Path | ServedModel, output: Path,
          batch_size: int = 32, workers: int = 4, progress: bool = True) -> dict:
    """Score the entries not yet in `output` (see the module docstring on resume) with `model` (a SavedModel folder,
    loaded here, or a `ServedModel` already loaded); return counts and throughput."""
    import numpy as np
    import tensorflow as tf
    import tqdm

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    saved_model_dir = model.saved_model_dir if isinstance(model, ServedModel) else Path(model)
    identity = {"model": str(saved_model_dir),
                "model_sha256": model.sha256 if isinstance(model, ServedModel) else model_sha256(saved_model_dir),
                "inputs_sha256": inputs_sha256(entries), "entries": len(entries)}
    done, committed = _resume_point(output, identity)
    counts = {"images": len(entries), "resumed": done, "scored": 0, "errors": 0}
    started = time.perf_counter()
    load_seconds = 0.0
    if not output.exists():
        function = model.signature if isinstance(model, ServedModel) else load_signature(saved_model_dir)
        load_seconds = time.perf_counter() - started
        partial = partial_path(output)
        with open(partial, "r+b" if partial.exists() else "w+b") as handle, \
                tqdm.tqdm(total=len(entries), initial=done, unit="img", desc="scoring", disable=not progress) as bar:

            def commit(rows, entries_in_rows: int):
                nonlocal done, committed
                handle.write(_csv_bytes(rows))
                handle.flush()
                os.fsync(handle.fileno())
                done, committed = done + entries_in_rows, handle.tell()
                files.write_json_atomic(record_path(output), {**identity, "rows": done, "bytes": committed})

            handle.truncate(committed)  # a row half-written by a killed run goes
            handle.seek(committed)
            if committed == 0:
                commit([COLUMNS], 0)
            for batch in _batches(list(entries[done:]), batch_size, workers):
                readable = [i for i, (_, data, _) in enumerate(batch) if data is not None]
                results = {}
                if readable:
                    out = function(**{contract.INPUT_NAME: tf.constant([batch[i][1] for i in readable])})
                    probability = out[contract.PROBABILITY].numpy()
                    classes, errors = out[contract.CLASS].numpy(), out[contract.ERROR].numpy()
                    for j, i in enumerate(readable):
                        results[i] = (probability[j], classes[j], errors[j].decode())
                rows = []
                for i, (name, _, error) in enumerate(batch):
                    p, c, served_error = results.get(i, (np.nan, -1, error))
                    if served_error or not np.isfinite(p):
                        counts["errors"] += 1
                        rows.append((name, "", "", served_error or "no probability"))
                    else:
                        counts["scored"] += 1
                        rows.append((name, repr(float(p)), int(c), ""))
                commit(rows, len(rows))
                bar.update(len(batch))
        os.replace(partial, output)
    seconds = time.perf_counter() - started
    this_run = counts["scored"] + counts["errors"]
    # The rate over reading and scoring alone: loading the model is a fixed cost (reported beside it), which
    # would make a short job look slower per image than a long one.
    scoring_seconds = seconds - load_seconds
    counts.update(seconds=round(seconds, 3), load_seconds=round(load_seconds, 3),
                  images_per_second=round(this_run / scoring_seconds, 2) if scoring_seconds else 0.0)
    return counts


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    try:
        if not FLAGS.model:
            raise ScoreError("--model is required")
        if bool(FLAGS.images) == bool(FLAGS.csv):
            raise ScoreError("give exactly one of --images and --csv")
        saved_model_dir = resolve_model(FLAGS.model)
        if FLAGS.csv:
            images_dir = Path(FLAGS.images_dir) if FLAGS.images_dir else None
            entries = list_csv(Path(FLAGS.csv), images_dir, FLAGS.filename_column)
        else:
            entries = list_images(FLAGS.images)
        if not entries:
            raise ScoreError(f"no images matched {FLAGS.images or FLAGS.csv}")
        index, count = parse_shard(FLAGS.shard)
        output = shard_output(Path(FLAGS.output), index, count)
        counts = score(shard_entries(entries, index, count), saved_model_dir, output, FLAGS.images_per_batch,
                       FLAGS.workers)
    except ScoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{counts['scored']} images scored and {counts['errors']} with errors (named in the error column) "
          f"in {counts['seconds']:.1f}s ({counts['load_seconds']:.1f}s of it loading the model): "
          f"{counts['images_per_second']:.1f} images/s; {counts['resumed']} were already "
          f"in the output; {counts['images']} in all -> {output} (model {saved_model_dir})")
    return 0


if __name__ == "__main__":
    app.run(main)
