"""What every data source gives ingest: rows with one image, one patient, a label and covariates.

A source reads its own table (the upstream `metadata.csv`, a hospital's `manifest.csv`), keeps the
frontal X-rays and puts each row in the study's words (`survival` Y/N, clinical flags Y/N, `offset`),
so that ingest, imputation and the TFRecords never ask which source they read (torchxrayvision's way:
one class per collection, the same fields out of each).
"""

from __future__ import annotations

import abc
import csv
import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.errors import PipelineError
from common.clinical_flags import FLAG_COLUMNS as CLINICAL_COLUMNS
from images import image_io

# The columns of ingest's `examples.csv` (a source may add its own, e.g. a manifest's `site`).
EXAMPLE_COLUMNS = (
    "source_id", "line", "patientid", "offset", "sex", "age", "view", "filename",
    "survival", "mortality_observed", *CLINICAL_COLUMNS,
    "width", "height", "source_mode", "converted",
)


@dataclasses.dataclass
class Selection:
    """A source's frontal rows, labelled (`mortality_observed`), and what it left out on the way."""

    rows: list[tuple[int, dict[str, Any]]]  # (first line in the table, row)
    dropped: list[dict[str, Any]]
    warnings: list[str]
    counts: dict[str, Any]  # schema, rows, covid_xray


class Source(abc.ABC):
    """One data folder. `filename` names an image in every output: never an identifier."""

    data_dir: Path
    table: Path  # the file whose rows the source reads
    key_id: str | None = None  # the pseudonym key's id, where the source uses one
    example_columns: tuple[str, ...] = EXAMPLE_COLUMNS

    @abc.abstractmethod
    def select(self, frontal_views: Sequence[str]) -> Selection:
        """The frontal rows, each with the columns of `example_columns` known before the image is read."""

    @abc.abstractmethod
    def image_path(self, filename: str) -> Path:
        """Where the image a row names lies (may raise image_io.ImageRejected)."""

    @abc.abstractmethod
    def image_files(self) -> list[tuple[str, Path, str]]:
        """(name in the fingerprint, path, name in the sha256 cache) of every image file the data covers."""

    def check_image(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Decode the row's image; the facts it adds to the row. Raises image_io.ImageRejected."""
        return image_facts(image_io.load_standard_image(self.image_path(row["filename"])))

    def image_counts(self, usable: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
        """Counts of its own for the ingest report."""
        return {}

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What a model card may say of the data: `source` ('upstream' or 'manifest') and facts that name
        neither a patient nor a path."""


def image_facts(image: image_io.StandardImage) -> dict[str, Any]:
    return {"width": image.width, "height": image.height, "source_mode": image.source_mode,
            "converted": int(image.converted)}


def rejection(line: int, row: Mapping[str, Any], reason: str, detail: str) -> dict[str, Any]:
    return {"line": line, "filename": row.get("filename", ""), "patientid": row.get("patientid", ""),
            "reason": reason, "detail": detail}


def read_table(path: Path, required: Sequence[str], error: type[PipelineError],
               what: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read a CSV table strictly; return the header and (first line, row) pairs. `what` names the
    table in messages ('the upstream metadata.csv')."""
    if not path.is_file():
        raise error(f"{path}: file not found (expected {what})")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise error(f"{path}: the file is empty") from None
        except csv.Error as csv_error:
            raise error(f"{path} line 1: {csv_error}") from None
        except UnicodeDecodeError as decode_error:
            raise error(f"{path} line 1: not UTF-8 text ({decode_error.reason})") from None
        _check_header(path, header, required, error)
        rows = []
        start = reader.line_num + 1
        try:
            for fields in reader:
                if fields and any(field.strip() for field in fields):
                    if len(fields) > len(header) and any(f.strip() for f in fields[len(header):]):
                        raise error(f"{path} line {start}: {len(fields)} fields but the header has {len(header)}")
                    fields = fields + [""] * (len(header) - len(fields))
                    rows.append((start, dict(zip(header, fields))))
                start = reader.line_num + 1
        except csv.Error as csv_error:
            raise error(
                f"{path} line {start}: {csv_error} (a quoted field opened on line {start} is never closed?)"
            ) from None
        except UnicodeDecodeError as decode_error:
            raise error(f"{path} near line {start}: not UTF-8 text ({decode_error.reason})") from None
    return header, rows


def _check_header(path: Path, header: Sequence[str], required: Sequence[str], error: type[PipelineError]) -> None:
    if len(header) == 1:
        for delimiter in (";", "\t", "|"):
            if delimiter in header[0]:
                raise error(f"{path} line 1: columns are separated by {delimiter!r}; the table must be "
                            "comma-separated")
    missing = [column for column in required if column not in header]
    if missing:
        raise error(f"{path} line 1: missing required column(s): {', '.join(missing)}")
