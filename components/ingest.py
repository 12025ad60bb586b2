"""Ingest: from the upstream `metadata.csv` + `images/` to a checked table of usable images.

Keeps COVID-19 X-rays in frontal views (optionally only those taken early:
`max_offset_days`), derives the mortality label from `survival`, decodes every
image once to prove it is usable, and writes `examples.csv` plus
`ingest_report.json` (the count after each step and every row dropped or
rejected, with its reason). Nothing here trains or imputes.
"""

from __future__ import annotations

import csv
import json
import collections
import concurrent.futures
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import tqdm

from common import files
from common.errors import PipelineError
from common.labels import NO_LABEL
from components import base
from images import image_io

METADATA_NAME = "metadata.csv"
IMAGES_DIR = "images"
EXAMPLES_NAME = "examples.csv"
REPORT_NAME = "ingest_report.json"

REQUIRED_COLUMNS = (
    "patientid", "offset", "sex", "age", "finding", "survival", "intubation_present",
    "went_icu", "needed_supplemental_O2", "extubated", "view", "modality", "filename",
)
CLINICAL_COLUMNS = ("went_icu", "needed_supplemental_O2", "intubation_present", "extubated")
EXAMPLE_COLUMNS = (
    "source_id", "line", "patientid", "offset", "sex", "age", "view", "filename",
    "survival", "mortality_observed", *CLINICAL_COLUMNS,
    "width", "height", "source_mode", "converted",
)
# Reasons a row is not selected (the study's choice of rows), as opposed to an image being rejected.
SELECTION_REASONS = ("not_covid", "not_xray", "not_frontal", "offset_out_of_range")


class MetadataError(PipelineError):
    """metadata.csv cannot be read as the upstream table."""


def mortality_from_survival(value: str) -> int | None:
    """`survival` N -> 1 (died), Y -> 0 (survived), blank or `?` -> -1; else None."""
    token = value.strip().upper()
    if token == "N":
        return 1
    if token == "Y":
        return 0
    if token in ("", "?"):
        return NO_LABEL
    return None


def is_covid(finding: str) -> bool:
    """True for the 2020 spelling (`COVID-19, ARDS`) and the 2021 one (`Pneumonia/Viral/COVID-19`)."""
    return "COVID-19" in {token.strip() for token in re.split(r"[/,]", finding)}


def read_metadata(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read the table strictly; return the header and (first line, row) pairs."""
    if not path.is_file():
        raise MetadataError(f"{path}: file not found (expected the upstream {METADATA_NAME})")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise MetadataError(f"{path}: the file is empty") from None
        except csv.Error as error:
            raise MetadataError(f"{path} line 1: {error}") from None
        _check_header(path, header)
        rows = []
        start = reader.line_num + 1
        try:
            for fields in reader:
                if fields and any(field.strip() for field in fields):
                    if len(fields) > len(header) and any(f.strip() for f in fields[len(header):]):
                        raise MetadataError(
                            f"{path} line {start}: {len(fields)} fields but the header has {len(header)}"
                        )
                    fields = fields + [""] * (len(header) - len(fields))
                    rows.append((start, dict(zip(header, fields))))
                start = reader.line_num + 1
        except csv.Error as error:
            raise MetadataError(
                f"{path} line {start}: {error} (a quoted field opened on line {start} is never closed?)"
            ) from None
        except UnicodeDecodeError as error:
            raise MetadataError(f"{path} near line {start}: not UTF-8 text ({error.reason})") from None
    return header, rows


def _check_header(path: Path, header: Sequence[str]) -> None:
    if len(header) == 1:
        for delimiter in (";", "\t", "|"):
            if delimiter in header[0]:
                raise MetadataError(
                    f"{path} line 1: columns are separated by {delimiter!r}; the upstream table is comma-separated"
                )
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise MetadataError(f"{path} line 1: missing required column(s): {', '.join(missing)}")


def _rejection(line: int, row: Mapping[str, str], reason: str, detail: str) -> dict[str, Any]:
    return {"line": line, "filename": row.get("filename", ""), "patientid": row.get("patientid", ""),
            "reason": reason, "detail": detail}


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


def ingest(data_dir: Path, frontal_views: Sequence[str], max_offset_days: float | None = None,
           workers: int = 2) -> dict[str, Any]:
    """Select, label and check the rows of `data_dir`; return examples and report."""
    header, rows = read_metadata(data_dir / METADATA_NAME)
    layout = "2021" if "RT_PCR_positive" in header else "2020"
    dropped: list[dict[str, Any]] = []
    warnings: list[str] = []
    frontal = {view.strip().lower() for view in frontal_views}

    covid_xray = []
    for line, row in rows:
        if not is_covid(row["finding"]):
            dropped.append(_rejection(line, row, "not_covid", f"finding {row['finding']!r}"))
        elif row["modality"].strip().lower() != "x-ray":
            dropped.append(_rejection(line, row, "not_xray", f"modality {row['modality']!r}"))
        else:
            covid_xray.append((line, row))

    selected = []
    for line, row in covid_xray:
        if row["view"].strip().lower() not in frontal:
            dropped.append(_rejection(line, row, "not_frontal", f"view {row['view']!r}"))
            continue
        label = mortality_from_survival(row["survival"])
        if label is None:
            warnings.append(f"line {line}: survival {row['survival']!r} is not Y, N, ? or blank; treated as unknown")
            label = NO_LABEL
        selected.append((line, {**row, "mortality_observed": label}))

    early = selected
    if max_offset_days is not None:
        early = []
        for line, row in selected:
            if taken_within(row["offset"], max_offset_days):
                early.append((line, row))
            else:
                dropped.append(_rejection(line, row, "offset_out_of_range",
                                          f"offset {row['offset']!r} is not <= {max_offset_days:g} days"))

    deduplicated = _drop_duplicates(early, dropped)
    usable = _check_images(data_dir / IMAGES_DIR, deduplicated, dropped, workers)

    counts = {
        "schema": layout,
        "rows": len(rows),
        "covid_xray": len(covid_xray),
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
    }
    return {"examples": usable, "counts": counts, "dropped": dropped, "warnings": warnings}


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
            dropped.append(_rejection(line, row, "duplicate_conflicting_labels",
                                      f"{row['filename']} is listed on lines {lines} with different survival"))
        elif group[0][0] != line:
            dropped.append(_rejection(line, row, "duplicate_filename",
                                      f"{row['filename']} already listed on line {group[0][0]}"))
        else:
            if labels and row["mortality_observed"] == NO_LABEL:
                row = {**row, "mortality_observed": labels.pop()}  # a duplicate row carried the label
            kept.append((line, row))
    return kept


def _check_one(images_dir: Path, row: Mapping[str, str]) -> dict[str, Any]:
    path = image_io.resolve_inside(images_dir, row["filename"])
    image = image_io.load_standard_image(path)
    return {"width": image.width, "height": image.height, "source_mode": image.source_mode,
            "converted": int(image.converted)}


def _check_images(images_dir, rows, dropped, workers):
    """Decode every image; rejected ones are listed with their reason, never raised."""
    usable = []

    def check(item):
        line, row = item
        try:
            return line, row, _check_one(images_dir, row), None
        except image_io.ImageRejected as rejected:
            return line, row, None, rejected

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(check, rows)
        for line, row, info, rejected in tqdm.tqdm(results, total=len(rows), desc="ingest: checking images",
                                                   unit="img", leave=False):
            if rejected is not None:
                dropped.append(_rejection(line, row, rejected.reason, rejected.detail))
            else:
                usable.append((line, {**row, **info}))
    return usable


def summary_line(counts: Mapping[str, Any]) -> str:
    labelled = counts["labelled"]
    early = ("" if counts.get("max_offset_days") is None else
             f"; {counts['within_offset']} of the {counts['frontal']} frontal taken at most "
             f"{counts['max_offset_days']:g} days in")
    return (
        f"{counts['rows']} rows -> {counts['covid_xray']} COVID-19 X-rays -> {counts['frontal']} frontal "
        f"({counts['frontal_patients']} patients) -> {labelled['count']} labelled ({labelled['survived']} survived, "
        f"{labelled['died']} died; {labelled['patients']} patients){early}; "
        f"{counts['missing_files']} image files missing, "
        f"{counts['rejected_images'] - counts['missing_files']} other images rejected; {counts['usable']} usable images"
    )


def example_rows(examples: Sequence[tuple[int, Mapping[str, Any]]]) -> list[dict[str, str]]:
    """Usable examples as the string rows of `examples.csv` (what later stages read)."""
    return [{column: str({**row, "line": line, "source_id": row["filename"]}[column]) for column in EXAMPLE_COLUMNS}
            for line, row in examples]


def _write_examples(path: Path, examples: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXAMPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(example_rows(examples))


def read_examples(artifact: base.Artifact) -> list[dict[str, str]]:
    with open(artifact.path / EXAMPLES_NAME, newline="") as handle:
        return list(csv.DictReader(handle))


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path) -> Mapping[str, Any]:
    result = ingest(inputs["data"].path, params["frontal_views"], params["max_offset_days"])
    _write_examples(out_dir / EXAMPLES_NAME, result["examples"])
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
