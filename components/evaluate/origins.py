"""Each patient's source, source type and site by the shortcut audit's rules, read from the upstream metadata.csv.

The rules are `sources/origin.py`'s (results/README.md, "Rules for the shortcut audit"); here they are applied
to the rows ingest selects (COVID-19 X-rays in a frontal view, before its image checks), with the source
types counted over every row of the table. `tools.count_sources` prints these counts and the audit
(`shortcut_audit`) joins them to the images, so both see the same patients the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common.labels import NO_LABEL
from components import configs
from sources import base, origin, upstream


@dataclasses.dataclass(frozen=True)
class Origins:
    """Per patient (upstream `patientid`): source, its type, site (unpooled and pooled); and what was counted."""

    metadata_rows: int
    selected_rows: list[dict[str, str]]
    source_type_of: dict[str, str]  # every source of the table -> CASE_REPORT | SERIES
    source: dict[str, str]
    site: dict[str, str]
    pooled_site: dict[str, str]  # fewer than origin.MIN_SITE_PATIENTS labelled patients -> OTHER_SITES
    labelled: set[str]
    died: set[str]
    several_sources: set[str]
    several_sites: set[str]

    @property
    def source_type(self) -> dict[str, str]:
        return {patient: self.source_type_of[source] for patient, source in self.source.items()}


def read_origins(data_dir: Path) -> Origins:
    """The upstream collection's patients, each with the source and site of their first selected row."""
    table = Path(data_dir) / upstream.METADATA_NAME
    _, every_row = base.read_table(table, (*upstream.REQUIRED_COLUMNS, *origin.ORIGIN_COLUMNS),
                                   upstream.MetadataError, f"the upstream {upstream.METADATA_NAME}")
    rows = [row for _, row in upstream.UpstreamSource(data_dir).select(configs.FRONTAL_VIEWS).rows]
    source, several_sources = origin.first_by_patient(rows, origin.source_of)
    site, several_sites = origin.first_by_patient(rows, lambda row: origin.site_of(row["location"]))
    labelled = {row["patientid"].strip() for row in rows if row["mortality_observed"] != NO_LABEL}
    return Origins(
        metadata_rows=len(every_row), selected_rows=rows,
        source_type_of=origin.source_types(row for _, row in every_row), source=source, site=site,
        pooled_site=origin.pooled_sites(site, labelled), labelled=labelled,
        died={row["patientid"].strip() for row in rows if row["mortality_observed"] == 1},
        several_sources=several_sources, several_sites=several_sites)
