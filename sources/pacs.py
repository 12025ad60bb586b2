"""A manifest built from a PACS export and an outcomes table, inside the hospital.

Every file under the export that is DICOM by content (`images.dicom.is_dicom`, whatever its name) is
read to its header only; its PatientID or AccessionNumber is looked up in the outcomes table (one row
per key: `died` and optionally `offset_days`, `site` and the study's outcome-adjacent flags). View,
age and sex come from the header (age from PatientAge, else from PatientBirthDate and StudyDate).
The manifest written is the hospital's own input to `sources/manifest.py`: it holds patient ids and
paths, as does the summary of what did not match, which names outcomes rows by line and files by path.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import os
from pathlib import Path

import pydicom

from common import files
from common.errors import PipelineError
from images import dicom
from sources.base import CLINICAL_COLUMNS, read_table
from sources.manifest import REQUIRED_COLUMNS as MANIFEST_REQUIRED, not_zero_one_blank

KEYS = ("PatientID", "AccessionNumber")
OUTCOME_COLUMNS = ("offset_days", "site", *CLINICAL_COLUMNS)  # copied to the manifest when the table has them
_ZERO_ONE_BLANK_COLUMNS = ("died", *CLINICAL_COLUMNS)


class PacsError(PipelineError):
    """The export or the outcomes table cannot be made into a manifest: one line naming file, line, column."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What the manifest takes from one DICOM file's header."""

    path: Path
    patient_id: str
    accession_number: str
    view: str
    age: str
    sex: str

    def key(self, key: str) -> str:
        return self.patient_id if key == "PatientID" else self.accession_number


@dataclasses.dataclass
class Built:
    """The manifest's rows and what was left out on either side, for the summary."""

    header: list[str]
    rows: list[dict[str, str]]
    key: str
    files_seen: int
    not_images: int  # not DICOM, or DICOM without an image
    unreadable: list[tuple[Path, str]]
    unmatched_files: list[Header]
    unmatched_lines: list[tuple[int, str]]
    ignored_columns: list[str]


def read_header(path: Path) -> Header | None:
    """The header of `path` if it is a DICOM image by content, else None (also for a DICOMDIR or a report);
    a DICOM file whose header cannot be read raises PacsError naming it."""
    if not dicom.is_dicom_file(path):
        return None
    try:
        dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception as error:  # noqa: BLE001 - a vendor's broken header is named, never a crash
        raise PacsError(f"{path}: DICOM header unreadable: {error}") from None
    if "Rows" not in dataset:
        return None
    text = lambda keyword: str(dataset.get(keyword) or "").strip()  # noqa: E731
    sex = text("PatientSex").upper()
    return Header(path=path, patient_id=text("PatientID"), accession_number=text("AccessionNumber"),
                  view=text("ViewPosition").upper(), age=age_from_header(text("PatientAge"),
                                                                          text("PatientBirthDate"), text("StudyDate")),
                  sex=sex if sex in ("M", "F") else "")


def age_from_header(patient_age: str, birth_date: str, study_date: str) -> str:
    """Age in years as the manifest writes it: from PatientAge (`065Y`, `018M`...), else whole years from
    PatientBirthDate to StudyDate (both YYYYMMDD), else blank."""
    years = dicom.age_in_years(patient_age)
    if years is not None:
        return f"{round(years, 1):g}"
    try:
        born, studied = (datetime.datetime.strptime(d, "%Y%m%d").date() for d in (birth_date, study_date))
    except ValueError:
        return ""
    whole = studied.year - born.year - ((studied.month, studied.day) < (born.month, born.day))
    return str(whole) if whole >= 0 else ""


def read_outcomes(path: Path, key: str) -> tuple[list[str], list[str], dict[str, tuple[int, dict[str, str]]]]:
    """The optional columns the table has, those it has beyond them (ignored), and its rows by key; blank or
    repeated keys and values other than 1, 0 or blank in `died` and the flags are refused."""
    header, rows = read_table(path, (key, "died"), PacsError, f"an outcomes table with columns {key}, died")
    by_key: dict[str, tuple[int, dict[str, str]]] = {}
    for line, row in rows:
        value = row[key].strip()
        if not value:
            raise PacsError(f"{path} line {line}, column {key}: is blank")
        if value in by_key:
            raise PacsError(f"{path} line {line}, column {key}: the same {key} as line {by_key[value][0]}")
        for column in _ZERO_ONE_BLANK_COLUMNS:
            if refusal := not_zero_one_blank(row.get(column, "").strip()):
                raise PacsError(f"{path} line {line}, column {column}: {refusal}")
        by_key[value] = (line, row)
    optional = [column for column in OUTCOME_COLUMNS if column in header]
    return optional, [column for column in header if column not in (key, "died", *optional)], by_key


def build(export_dir: Path, outcomes: Path, key: str, manifest_dir: Path) -> Built:
    """The manifest's rows: one per DICOM file under `export_dir` whose `key` is in `outcomes`; images are
    written relative to `manifest_dir` when they lie inside it, else absolute."""
    if key not in KEYS:
        raise PacsError(f"--key={key}: must be one of {', '.join(KEYS)}")
    export_dir = Path(export_dir).resolve()
    if not export_dir.is_dir():
        raise PacsError(f"--dicom_dir={export_dir}: not a folder")
    optional, ignored, by_key = read_outcomes(Path(outcomes), key)
    paths = sorted(p for p in export_dir.rglob("*") if p.is_file())
    headers, not_images, unreadable = [], 0, []
    for path in paths:
        try:
            header = read_header(path)
        except PacsError as error:
            unreadable.append((path, str(error).removeprefix(f"{path}: ")))
            continue
        if header is None:
            not_images += 1
        elif not header.patient_id:
            unreadable.append((path, "no PatientID in its header"))
        else:
            headers.append(header)
    matched_keys, rows, unmatched_files = set(), [], []
    for header in headers:
        found = by_key.get(header.key(key))
        if found is None:
            unmatched_files.append(header)
            continue
        matched_keys.add(header.key(key))
        outcome = found[1]
        rows.append({"image": _image_value(header.path, Path(manifest_dir).resolve()), "patient_id": header.patient_id,
                     "died": outcome["died"].strip(), "age": header.age, "sex": header.sex, "view": header.view,
                     **{column: outcome[column].strip() for column in optional}})
    unmatched_lines = sorted((line, value) for value, (line, _) in by_key.items() if value not in matched_keys)
    return Built([*MANIFEST_REQUIRED, "age", "sex", "view", *optional], rows, key, len(paths), not_images,
                 unreadable, unmatched_files, unmatched_lines, ignored)


def _image_value(path: Path, manifest_dir: Path) -> str:
    return os.path.relpath(path, manifest_dir) if manifest_dir in path.parents else str(path)


def refuse_existing(output: Path, overwrite: bool) -> None:
    if Path(output).exists() and not overwrite:
        raise PacsError(f"--output={output}: exists already (--overwrite replaces it)")


def write(built: Built, output: Path) -> None:
    """The manifest at `output`, through a temporary sibling renamed over it; nothing is written when no
    file matched."""
    if not built.rows:
        raise PacsError(f"--output={output}: not written, no DICOM file matched a row of the outcomes table "
                        f"by {built.key}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_open(output, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=built.header)
        writer.writeheader()
        writer.writerows(built.rows)


def summary(built: Built, outcomes: Path, output: Path | None = None) -> list[str]:
    """Lines naming what was written and every row of either side that was left out (identifiers included:
    this is the hospital's own input)."""
    patients = len({row["patient_id"] for row in built.rows})
    lines = [f"{output or 'manifest'}: {len(built.rows)} images of {patients} patients, from {built.files_seen} "
             f"files ({built.not_images} not DICOM images, skipped; {len(built.unreadable)} DICOM unreadable)"]
    if built.ignored_columns:
        lines.append(f"{outcomes}: column(s) ignored: {', '.join(built.ignored_columns)}")
    if built.unreadable:
        lines.append(f"{len(built.unreadable)} DICOM file(s) unreadable:")
        lines += [f"  {path}: {why}" for path, why in built.unreadable]
    if built.unmatched_files:
        lines.append(f"{len(built.unmatched_files)} DICOM file(s) match no row of {outcomes} by {built.key}:")
        lines += [f"  {h.path} ({built.key} {h.key(built.key) or '(blank)'})" for h in built.unmatched_files]
    if built.unmatched_lines:
        lines.append(f"{len(built.unmatched_lines)} row(s) of {outcomes} match no DICOM file by {built.key}:")
        lines += [f"  line {line} ({built.key} {value})" for line, value in built.unmatched_lines]
    return lines
