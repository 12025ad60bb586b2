"""A hospital's own X-rays: `manifest.csv`, one row per image, read with identifiers kept in.

Columns: `image` (a path relative to the folder, or absolute), `patient_id`, `died` (1, 0, blank);
optional `age`, `sex` (M/F; left blank, taken from a DICOM image's header), `site`, `view`, `offset_days`
and the study's outcome-adjacent flags (`went_icu`, `needed_supplemental_O2`, `intubation_present`,
`extubated`: 1, 0, blank). Every value is checked before anything is written. Patients are named by a
keyed pseudonym (common/pseudonym.py) and images by their file name unless that could identify (a DICOM
UID, the patient id, a name two images share): then by a pseudonym too. Nothing that leaves this module names a patient id or an
image's path; `lookup` maps the pseudonyms back, for use inside the hospital only.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

from common import pseudonym
from common.errors import PipelineError
from common.labels import NO_LABEL
from images import dicom, image_io
from sources.base import CLINICAL_COLUMNS, EXAMPLE_COLUMNS, Selection, Source, image_facts, read_table, rejection

MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("image", "patient_id", "died")
OPTIONAL_COLUMNS = ("age", "sex", "site", "view", "offset_days", *CLINICAL_COLUMNS)
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
OLDEST_AGE_WRITTEN = 90  # ages over 89 are written as 90 (HIPAA Safe Harbor)
_FLAGS = {"1": "Y", "0": "N", "": ""}  # to the study's words, which imputation reads
_ZERO_ONE_BLANK = tuple(_FLAGS)  # what `died` and the flags may hold, here and in a PACS outcomes table


def not_zero_one_blank(text: str) -> str | None:
    """The refusal of a `died` or flag value that is not 1, 0 or blank (None when it is one of them)."""
    return None if text in _ZERO_ONE_BLANK else f"{text!r} is not 1, 0 or blank"


def written_age(years: float) -> str:
    """An age as the manifest and its artifacts write it: ages over 89 as 90 (HIPAA Safe Harbor)."""
    return str(OLDEST_AGE_WRITTEN) if years > OLDEST_AGE_WRITTEN - 1 else f"{round(years, 1):g}"


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class ManifestError(PipelineError):
    """manifest.csv cannot be read: one line naming the line and column."""


class ManifestSource(Source):
    def __init__(self, data_dir: Path, key: bytes):
        self.data_dir = Path(data_dir)
        self.table = self.data_dir / MANIFEST_NAME
        self._key, self.key_id = key, pseudonym.key_id(key)
        self._frontal: set[str] | None = None  # the frontal views `select` was given, for header views
        header, raw_rows = read_table(self.table, REQUIRED_COLUMNS, ManifestError, "a manifest")
        self.missing_clinical = [column for column in CLINICAL_COLUMNS if column not in header]
        self.ignored_columns = [c for c in header if c not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)]
        self.example_columns = (*(c for c in EXAMPLE_COLUMNS if c not in self.missing_clinical),
                                "burned_in_annotation", "site")
        paths = [self._path(line, raw) for line, raw in raw_rows]
        self._check_unique(paths, raw_rows)
        shared_names = {name for name, n in collections.Counter(p.name for p in paths).items() if n > 1}
        self._paths: dict[str, Path] = {}  # image name in the outputs -> its file
        self._patients: dict[str, str] = {}  # patient pseudonym -> patient id
        self.rows = []
        for (line, raw), path in zip(raw_rows, paths):
            patient_id = raw["patient_id"].strip()
            if not patient_id:
                self._fail(line, "patient_id", "is blank")
            name = self._image_name(raw["image"].strip(), path, patient_id, shared_names)
            row = self._standard_row(line, raw, patient_id, name)
            self._paths[name] = path
            self._patients[row["patientid"]] = patient_id
            self.rows.append((line, row))

    def _path(self, line: int, raw: Mapping[str, str]) -> Path:
        value = raw["image"].strip()
        if not value:
            self._fail(line, "image", "is blank")
        path = Path(value).expanduser()
        return (path if path.is_absolute() else self.data_dir / path).resolve()

    def _check_unique(self, paths: Sequence[Path], raw_rows) -> None:
        first_line: dict[Path, int] = {}
        for path, (line, _) in zip(paths, raw_rows):
            if path in first_line:  # the path itself is never printed: it may name the patient
                self._fail(line, "image", f"the same image as line {first_line[path]}")
            first_line[path] = line

    def _fail(self, line: int, column: str, problem: str) -> NoReturn:
        raise ManifestError(f"{self.table} line {line}, column {column}: {problem}")

    def _image_name(self, image: str, path: Path, patient_id: str, shared_names: set[str]) -> str:
        """The file's own name, or a pseudonym of the manifest's `image` value (so it survives moving the
        folder) where that name could identify or is not unique."""
        name = path.name
        if pseudonym.is_identifying_name(name) or patient_id.casefold() in name.casefold() or name in shared_names:
            suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ""
            return pseudonym.image_pseudonym(self._key, image, suffix)
        return name

    def _standard_row(self, line: int, raw: Mapping[str, str], patient_id: str, name: str) -> dict[str, Any]:
        """The row in the study's words (`survival` Y/N, flags Y/N, `offset`), every value checked."""
        value = lambda column: raw.get(column, "").strip()  # noqa: E731
        died = value("died")
        if refusal := not_zero_one_blank(died):
            self._fail(line, "died", refusal)
        sex = value("sex").upper()
        if sex not in ("M", "F", ""):
            self._fail(line, "sex", f"{value('sex')!r} is not M, F or blank")
        row = {"patientid": pseudonym.patient_pseudonym(self._key, patient_id), "filename": name,
               "age": self._age(line, value("age")), "sex": sex, "view": value("view"),
               "offset": self._number(line, "offset_days", value("offset_days")), "site": value("site"),
               "survival": {"1": "N", "0": "Y", "": ""}[died],
               "mortality_observed": {"1": 1, "0": 0, "": NO_LABEL}[died]}
        for column in CLINICAL_COLUMNS:
            if column not in self.missing_clinical:
                if refusal := not_zero_one_blank(value(column)):
                    self._fail(line, column, refusal)
                row[column] = _FLAGS[value(column)]
        return row

    def _number(self, line: int, column: str, text: str) -> str:
        if text and not _NUMBER.fullmatch(text):
            self._fail(line, column, f"{text!r} is not a number")
        return text

    def _age(self, line: int, text: str) -> str:
        if self._number(line, "age", text) and (text.startswith("-") or float(text) > 130):
            self._fail(line, "age", f"{text!r} is not an age in years")
        return written_age(float(text)) if text and float(text) > OLDEST_AGE_WRITTEN - 1 else text

    def select(self, frontal_views: Sequence[str]) -> Selection:
        """Rows whose `view` is frontal or blank (decided from the DICOM header, else assumed frontal)."""
        frontal = self._frontal = {view.strip().lower() for view in frontal_views}
        selected, dropped = [], []
        for line, row in self.rows:
            if row["view"] and row["view"].lower() not in frontal:
                dropped.append(rejection(line, row, "not_frontal", f"view {row['view']!r}"))
            else:
                selected.append((line, dict(row)))
        warnings = [f"{MANIFEST_NAME}: column(s) ignored: {', '.join(self.ignored_columns)}"] if self.ignored_columns \
            else []
        return Selection(selected, dropped, warnings,
                         {"schema": "manifest", "rows": len(self.rows), "covid_xray": len(self.rows)})

    def image_path(self, filename: str) -> Path:
        if filename not in self._paths:
            raise PipelineError(f"{self.table}: no image named {filename} any more (was the manifest edited?)")
        return self._paths[filename]

    def check_image(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Decode the image; a rejection names it by its name in the outputs, never by its path."""
        if self._frontal is None:  # a header's view is checked against the views `select` kept
            raise PipelineError(f"{self.table}: check_image before select (the frontal views are not known yet)")
        path = self.image_path(row["filename"])
        try:
            image = image_io.load_standard_image(path)
        except image_io.ImageRejected as rejected:
            detail = rejected.detail.replace(str(path), row["filename"]).replace(path.name, row["filename"])
            raise image_io.ImageRejected(rejected.reason, detail) from None
        facts = image.dicom  # the DICOM header's facts (None for PNG/JPEG)
        if facts is None:
            return {**image_facts(image), "view_assumed": int(not row["view"]), "burned_in_annotation": 0}
        reason = dicom.screen(facts)
        if reason:
            raise image_io.ImageRejected(reason, f"{row['filename']}: from its DICOM header")
        view = row["view"] or facts.view_position or ""
        if not row["view"] and view and view.lower() not in self._frontal:
            raise image_io.ImageRejected("not_frontal", f"{row['filename']}: view {view!r} from its DICOM header")
        return {**image_facts(image), "view": view, "view_assumed": int(not view),
                **header_covariates(row, facts), "burned_in_annotation": int(facts.burned_in_annotation == "YES")}

    def image_counts(self, usable: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
        burned_in = sorted(row["filename"] for _, row in usable if row["burned_in_annotation"])
        return {"view_assumed_frontal": sum(row["view_assumed"] for _, row in usable),
                "age_from_dicom_header": sum(row.get("age_from_header", 0) for _, row in usable),
                "sex_from_dicom_header": sum(row.get("sex_from_header", 0) for _, row in usable),
                "burned_in_annotation": len(burned_in), "burned_in_annotation_images": burned_in,
                "sites": sorted({row["site"] for _, row in usable if row["site"]}),
                "imputation_columns_missing": self.missing_clinical}

    def image_files(self) -> list[tuple[str, Path, str]]:
        """The files the manifest names, wherever they are, by keyed hashes of their paths (the sha256
        cache lies in --output_dir: no path may be written there)."""
        named = sorted(set(self._paths.values()))
        hashed = [pseudonym.keyed_hash(self._key, str(path)) for path in named]
        return [(digest, path, digest) for digest, path in zip(hashed, named) if path.is_file()]

    def describe(self) -> dict[str, Any]:
        """The folder's name (never its path), its sites and the pseudonym key's id."""
        return {"source": "manifest", "folder": self.data_dir.name, "pseudonym_key_id": self.key_id,
                "sites": sorted({row["site"] for _, row in self.rows if row["site"]})}

    def lookup(self, names: Sequence[str]) -> dict[str, str]:
        """Patient pseudonyms -> patient ids and image names -> paths; unknown names are left out."""
        known = {**self._patients, **{name: str(path) for name, path in self._paths.items()}}
        return {name: known[name] for name in names if name in known}


def header_covariates(row: Mapping[str, Any], facts: dicom.DicomFacts) -> dict[str, Any]:
    """Age and sex the manifest left blank, from the DICOM header (ages over 89 written as 90), each marked
    so that ingest counts them."""
    found: dict[str, Any] = {}
    years = facts.patient_age_years
    if not row["age"] and years is not None:
        found.update(age=written_age(years), age_from_header=1)
    if not row["sex"] and facts.patient_sex:
        found.update(sex=facts.patient_sex, sex_from_header=1)
    return found
