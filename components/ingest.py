"""Ingest: from the data folder's source (`sources/`) to a checked table of usable images.

The source keeps the frontal X-rays and labels them (the upstream `metadata.csv`: COVID-19 rows,
`survival`; a hospital's `manifest.csv`: `died`, pseudonymous patients). Here, for either: optionally
only those taken early (`max_offset_days`), one row per image file, and every image decoded once to
prove it is usable; `examples.csv` plus `ingest_report.json` (the count after each step and every row
dropped or rejected, with its reason). Nothing here trains or imputes.
"""

from __future__ import annotations

import csv
import json
import collections
import concurrent.futures
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import tqdm

import sources
from common import files
from common.errors import PipelineError
from common.labels import NO_LABEL
from components import base
from images import dicom, image_io
from sources.base import rejection

EXAMPLES_NAME = "examples.csv"
REPORT_NAME = "ingest_report.json"

CLINICAL_COLUMNS = sources.CLINICAL_COLUMNS
# Reasons a row is not selected (the study's choice of rows, and DICOM headers that say the image is not a
# frontal chest radiograph for presentation), as opposed to an image being rejected.
SELECTION_REASONS = ("not_covid", "not_xray", "not_frontal", "offset_out_of_range", *dicom.DICOM_SCREEN_REASONS)


def _label_summary(rows: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, int]:
    labels = collections.Counter(row["mortality_observed"] for _, row in rows)
    labelled = [row for _, row in rows if row["mortality_observed"] != NO_LABEL]
    return {"count": len(labelled), "survived": labels[0], "died": labels[1],
            "patients": len({row["patientid"] for row in labelled})}


def taken_within(offset: str, max_offset_days: float) -> bool:
    """Whether a row's `offset` (days since symptom onset or admission; negative = before it) is at most
    `max_offset_days`. A row without a number there is not: when it was taken is unknown."""
    try:
        return float(offset) <= max_offset_days
    except ValueError:
        return False


def ingest(data: Path | sources.Source, frontal_views: Sequence[str], max_offset_days: float | None = None,
           workers: int | None = None) -> dict[str, Any]:
    """Select, label and check the rows of `data` (a folder or its source); return examples and report.
    The images are checked in `workers` processes (default: one per core it may use)."""
    source = data if isinstance(data, sources.Source) else sources.open_source(data)
    selection = source.select(frontal_views)
    selected, dropped, warnings = selection.rows, selection.dropped, selection.warnings

    early = selected
    if max_offset_days is not None:
        early = []
        for line, row in selected:
            if taken_within(row["offset"], max_offset_days):
                early.append((line, row))
            else:
                dropped.append(rejection(line, row, "offset_out_of_range",
                                          f"offset {row['offset']!r} is not <= {max_offset_days:g} days"))

    deduplicated = _drop_duplicates(early, dropped)
    usable = _check_images(source, deduplicated, dropped, workers)

    counts = {
        **selection.counts,
        "frontal": len(selected),
        "frontal_patients": len({row["patientid"] for _, row in selected}),
        "labelled": _label_summary(selected),
        "max_offset_days": max_offset_days,
        "within_offset": len(early),
        "missing_files": sum(1 for d in dropped if d["reason"] == "missing_file"),
        "rejected_images": sum(1 for d in dropped if d["reason"] not in SELECTION_REASONS),
        "usable": len(usable),
        "usable_patients": len({row["patientid"] for _, row in usable}),
        "usable_labelled": _label_summary(usable),
        "converted_images": sum(1 for _, row in usable if row["converted"]),
        **_dicom_screened(dropped),
        **source.image_counts(usable),
    }
    return {"examples": usable, "counts": counts, "dropped": dropped, "warnings": warnings,
            "columns": source.example_columns}


def _dicom_screened(dropped) -> dict[str, Any]:
    """How many images each DICOM screening reason left out; nothing when none was (PNG/JPEG data)."""
    screened = collections.Counter(d["reason"] for d in dropped if d["reason"] in dicom.DICOM_SCREEN_REASONS)
    return {"dicom_screened": dict(sorted(screened.items()))} if screened else {}


def _drop_duplicates(selected, dropped):
    """Keep one row per file; a file listed with two different labels is rejected entirely."""
    by_name: dict[str, list[tuple[int, dict]]] = collections.defaultdict(list)
    for line, row in selected:
        by_name[row["filename"]].append((line, row))
    kept = []
    for line, row in selected:
        group = by_name[row["filename"]]
        labels = {r["mortality_observed"] for _, r in group} - {NO_LABEL}
        lines = ", ".join(str(l) for l, _ in group)
        if len(labels) > 1:
            dropped.append(rejection(line, row, "duplicate_conflicting_labels",
                                      f"{row['filename']} is listed on lines {lines} with different survival"))
        elif group[0][0] != line:
            dropped.append(rejection(line, row, "duplicate_filename",
                                      f"{row['filename']} already listed on line {group[0][0]}"))
        else:
            if labels and row["mortality_observed"] == NO_LABEL:
                row = {**row, "mortality_observed": labels.pop()}  # a duplicate row carried the label
            kept.append((line, row))
    return kept


def _check_images(source, rows, dropped, workers):
    """Decode every image; rejected ones are listed with their reason, never raised.

    In this process first, in worker processes once that pays (`_pool_pays`): the DICOM decoders (GDCM,
    OpenJPEG) hold the GIL, so threads decode on one core, but a pool costs seconds to start (its server
    imports the main module: TensorFlow for `pipeline.run`), more than a few hundred PNGs take. Results
    keep the rows' order, so examples and rejections do not depend on `workers`."""
    workers = min(workers or usable_cores(), len(rows))
    usable = []
    with tqdm.tqdm(total=len(rows), desc="ingest: checking images", unit="img", leave=False) as bar:
        for (line, row), (info, rejected) in zip(rows, _checked(source, rows, workers)):
            if rejected is not None:
                dropped.append(rejection(line, row, *rejected))
            else:
                usable.append((line, {**row, **info}))
            bar.update()
    return usable


POOL_AFTER_SECONDS = 5.0  # about what a pool's start costs: worth it for a rest that takes longer on one core


def _checked(source, rows, workers):
    """`_check_row`'s result for each row, in order: in this process until `_pool_pays`, then in the pool."""
    if workers == 1:
        yield from (_check_row(source, row) for _, row in rows)
        return
    sizes = [_file_size(source, row) for _, row in rows]
    started, checked_bytes, left_bytes = time.perf_counter(), 0, sum(sizes)
    for done, (_, row) in enumerate(rows):
        if _pool_pays(time.perf_counter() - started, checked_bytes, left_bytes):
            yield from _checked_in_pool(source, rows[done:], sizes[done:], workers)
            return
        yield _check_row(source, row)
        checked_bytes, left_bytes = checked_bytes + sizes[done], left_bytes - sizes[done]


def _pool_pays(seconds: float, checked_bytes: int, left_bytes: int) -> bool:
    """Whether the images left are worth a pool's start: checking here has taken `POOL_AFTER_SECONDS`, or
    the files left would take that long at the pace of those checked (a folder of JPEG 2000 radiographs
    goes to the pool after its first file, one of small PNGs never)."""
    return seconds >= POOL_AFTER_SECONDS or (checked_bytes > 0 and
                                             seconds * left_bytes / checked_bytes >= POOL_AFTER_SECONDS)


def _file_size(source, row) -> int:
    """The bytes of a row's image file; 0 where there is none to read (its check names why)."""
    try:
        return source.image_path(row["filename"]).stat().st_size
    except (OSError, PipelineError, image_io.ImageRejected):
        return 0


def usable_cores() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _checked_in_pool(source, rows, sizes, workers):
    """`_check_row`'s results, in the rows' order, from a process pool that gets the source once per
    process. The biggest files go first, so that the last ones, decoded while the other workers may
    have nothing left, are small. Forkserver, not fork: the parent may run TensorFlow's threads; the
    server imports the main module and this one once, so each worker starts as a fork of it."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", __name__])  # once per server: workers fork with these imported
    else:
        context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_set_worker_source,
                                                initargs=(source,)) as pool:
        futures = {}
        for position in sorted(range(len(rows)), key=lambda position: -sizes[position]):
            futures[position] = pool.submit(_check_in_worker, rows[position][1])
        for position in range(len(rows)):
            yield futures.pop(position).result()


def _check_row(source, row):
    """(the facts the image adds, None) or (None, (reason, detail)): plain values, which pickle (an
    ImageRejected would not: its arguments are not its message)."""
    try:
        return source.check_image(row), None
    except image_io.ImageRejected as rejected:
        return None, (rejected.reason, rejected.detail)


_worker_source = None  # the source a pool worker checks rows of (set once per process)


def _set_worker_source(source):
    global _worker_source
    _worker_source = source


def _check_in_worker(row):
    return _check_row(_worker_source, row)


def summary_line(counts: Mapping[str, Any]) -> str:
    labelled = counts["labelled"]
    early = ("" if counts.get("max_offset_days") is None else
             f"; {counts['within_offset']} of the {counts['frontal']} frontal taken at most "
             f"{counts['max_offset_days']:g} days in")
    assumed = ("" if not counts.get("view_assumed_frontal") else
               f" ({counts['view_assumed_frontal']} without a view, assumed frontal)")
    rows = (f"{counts['rows']} rows of manifest.csv" if counts.get("schema") == "manifest" else
            f"{counts['rows']} rows -> {counts['covid_xray']} COVID-19 X-rays")
    return (
        f"{rows} -> {counts['frontal']} frontal "
        f"({counts['frontal_patients']} patients) -> {labelled['count']} labelled ({labelled['survived']} survived, "
        f"{labelled['died']} died; {labelled['patients']} patients){early}; "
        f"{counts['missing_files']} image files missing, "
        f"{counts['rejected_images'] - counts['missing_files']} other images rejected; "
        f"{counts['usable']} usable images{assumed}{_dicom_header_notes(counts)}"
    )


def _dicom_header_notes(counts: Mapping[str, Any]) -> str:
    """What a manifest's DICOM headers supplied or flagged; nothing for the upstream collection."""
    notes = [f"{counts[key]} {what}" for key, what in (
        ("age_from_dicom_header", "age from DICOM header"), ("sex_from_dicom_header", "sex from DICOM header"),
        ("burned_in_annotation", "with burned-in annotation (left out of figures)")) if counts.get(key)]
    return f"; {', '.join(notes)}" if notes else ""


def example_rows(examples: Sequence[tuple[int, Mapping[str, Any]]],
                 columns: Sequence[str] = sources.EXAMPLE_COLUMNS) -> list[dict[str, str]]:
    """Usable examples as the string rows of `examples.csv` (what later stages read)."""
    return [{column: str({**row, "line": line, "source_id": row["filename"]}[column]) for column in columns}
            for line, row in examples]


def _write_examples(path: Path, examples: Sequence[tuple[int, Mapping[str, Any]]], columns: Sequence[str]) -> None:
    with files.atomic_open(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(example_rows(examples, columns))


def read_examples(artifact: base.Artifact) -> list[dict[str, str]]:
    with open(artifact.path / EXAMPLES_NAME, newline="") as handle:
        return list(csv.DictReader(handle))


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path) -> Mapping[str, Any]:
    result = ingest(inputs["data"].source, params["frontal_views"], params["max_offset_days"])
    _write_examples(out_dir / EXAMPLES_NAME, result["examples"], result["columns"])
    counts = result["counts"]
    files.write_json_atomic(out_dir / REPORT_NAME, {
        "summary": summary_line(counts),
        "counts": counts,
        "missing_files": [d["filename"] for d in result["dropped"] if d["reason"] == "missing_file"],
        "rejected": [d for d in result["dropped"] if d["reason"] not in SELECTION_REASONS],
        "filtered": result["dropped"],
        "warnings": result["warnings"],
    })
    return counts


def _summary(artifact: base.Artifact) -> str:
    report = json.loads((artifact.path / REPORT_NAME).read_text())
    lines = [report["summary"]]
    lines += [f"    rejected line {r['line']} {r['filename']}: {r['reason']} ({r['detail']})" for r in report["rejected"]]
    lines += [f"    warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)


SPEC = base.ComponentSpec(name="ingest", run=run, summary=_summary)
