"""Where an upstream row came from: its source (the publication or page), the source's type and the site.

The shortcut audit (results/README.md, "Rules for the shortcut audit") asks whether a model ranks
deaths by the lungs or by where the X-ray was published: a single-patient journal case report is
written because the patient was remarkable, a hospital series is not. These are its rules, as pure
functions over `metadata.csv` rows, so the audit and the counts read the same definitions:

- source: the DOI (lower-cased, without a `https://doi.org/` or `doi:` prefix), else the URL
  (without a trailing `/`), else the location text; a row with none of the three is bad input;
- type: `case_report` when one patient shares the source over every row of `metadata.csv` (all
  findings and modalities: the type belongs to the publication, not to our selection), `series`
  when two or more do;
- site: the last comma-separated token of `location` (the country, as upstream writes it), spaces
  collapsed; blank is `unknown`; sites with fewer than `MIN_SITE_PATIENTS` patients are pooled as
  `other sites` (`unknown` is never pooled: it is no site);
- a patient's source and site are those of the patient's first row in file order (a patient whose
  rows name two sources or sites is counted, not split).
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, Mapping

from common.errors import PipelineError

ORIGIN_COLUMNS = ("patientid", "doi", "url", "location")
CASE_REPORT, SERIES = "case_report", "series"
UNKNOWN_SITE, OTHER_SITES = "unknown", "other sites"
MIN_SITE_PATIENTS = 5  # patients with an observed label; fewer and a site is pooled as OTHER_SITES

_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)


def source_of(row: Mapping[str, str]) -> str:
    """`doi:<doi>`, else `url:<url>`, else `location:<text>`."""
    doi = _DOI_PREFIX.sub("", row["doi"].strip()).lower()
    if doi:
        return f"doi:{doi}"
    url = row["url"].strip().rstrip("/")
    if url:
        return f"url:{url}"
    location = " ".join(row["location"].split())
    if location:
        return f"location:{location}"
    raise PipelineError(f"patient {row['patientid']!r}: no doi, url or location, so no source")


def source_types(rows: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """{source: CASE_REPORT | SERIES} by the number of distinct patients sharing it in `rows`."""
    patients = collections.defaultdict(set)
    for row in rows:
        patients[source_of(row)].add(row["patientid"].strip())
    return {source: CASE_REPORT if len(ids) == 1 else SERIES for source, ids in patients.items()}


def site_of(location: str) -> str:
    """The last comma-separated token of `location`, spaces collapsed; blank -> `unknown`."""
    site = " ".join(location.split(",")[-1].split())
    return site or UNKNOWN_SITE


def pooled_sites(patient_sites: Mapping[str, str], counted_patients: Iterable[str],
                 min_patients: int = MIN_SITE_PATIENTS) -> dict[str, str]:
    """{patient: site}, a site with fewer than `min_patients` of `counted_patients` becoming `other sites`."""
    counts = collections.Counter(patient_sites[patient] for patient in set(counted_patients))
    return {patient: site if site == UNKNOWN_SITE or counts[site] >= min_patients else OTHER_SITES
            for patient, site in patient_sites.items()}


def first_by_patient(rows: Iterable[Mapping[str, str]], value) -> tuple[dict[str, str], set[str]]:
    """({patient: value(first row)}, patients whose rows give more than one value)."""
    first, seen = {}, collections.defaultdict(set)
    for row in rows:
        patient = row["patientid"].strip()
        first.setdefault(patient, value(row))
        seen[patient].add(value(row))
    return first, {patient for patient, values in seen.items() if len(values) > 1}
