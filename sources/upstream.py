"""The upstream collection, ieee8023/covid-chestxray-dataset: `metadata.csv` + `images/`.

Keeps COVID-19 X-rays in frontal views and derives the mortality label from `survival`; its public
patient ids and file names are kept as they are (they are already public). Each row's `site` is
sources/origin.py's rule on `location` (its last comma-separated token; blank or absent -> `unknown`),
as a manifest's `site` column, for `--split=site`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from common.errors import PipelineError
from common.labels import NO_LABEL
from images import image_io
from sources import origin
from sources.base import EXAMPLE_COLUMNS, Selection, Source, read_table, rejection

METADATA_NAME = "metadata.csv"
IMAGES_DIR = "images"
REQUIRED_COLUMNS = (
    "patientid", "offset", "sex", "age", "finding", "survival", "intubation_present",
    "went_icu", "needed_supplemental_O2", "extubated", "view", "modality", "filename",
)


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


def read_metadata(path: Path):
    """Read the table strictly; return the header and (first line, row) pairs."""
    return read_table(path, REQUIRED_COLUMNS, MetadataError, f"the upstream {METADATA_NAME}")


class UpstreamSource(Source):
    example_columns = (*EXAMPLE_COLUMNS, "site")

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.table = self.data_dir / METADATA_NAME
        self.images_dir = self.data_dir / IMAGES_DIR

    def select(self, frontal_views: Sequence[str]) -> Selection:
        header, rows = read_metadata(self.table)
        dropped, warnings = [], []
        frontal = {view.strip().lower() for view in frontal_views}
        covid_xray = []
        for line, row in rows:
            if not is_covid(row["finding"]):
                dropped.append(rejection(line, row, "not_covid", f"finding {row['finding']!r}"))
            elif row["modality"].strip().lower() != "x-ray":
                dropped.append(rejection(line, row, "not_xray", f"modality {row['modality']!r}"))
            else:
                covid_xray.append((line, row))
        selected = []
        for line, row in covid_xray:
            if row["view"].strip().lower() not in frontal:
                dropped.append(rejection(line, row, "not_frontal", f"view {row['view']!r}"))
                continue
            label = mortality_from_survival(row["survival"])
            if label is None:
                warnings.append(f"line {line}: survival {row['survival']!r} is not Y, N, ? or blank; "
                                "treated as unknown")
                label = NO_LABEL
            selected.append((line, {**row, "mortality_observed": label,
                                    "site": origin.site_of(row.get("location", ""))}))
        layout = "2021" if "RT_PCR_positive" in header else "2020"
        return Selection(selected, dropped, warnings,
                         {"schema": layout, "rows": len(rows), "covid_xray": len(covid_xray)})

    def describe(self) -> dict[str, str]:
        return {"source": "upstream", "collection": "ieee8023/covid-chestxray-dataset"}

    def image_path(self, filename: str) -> Path:
        return image_io.resolve_inside(self.images_dir, filename)

    def image_files(self) -> list[tuple[str, Path, str]]:
        """Every file under `images/`, listed or not, by its path there."""
        if not self.images_dir.is_dir():
            return []
        return [(str(path.relative_to(self.images_dir)), path, str(path))
                for path in sorted(p for p in self.images_dir.rglob("*") if p.is_file())]
