"""Count patients and deaths by source type and by site, as the shortcut audit will see them.

    python -m tools.count_sources --data_dir=../shared/data/covid-chestxray-dataset

Reads `metadata.csv` only (no image is opened), keeps the rows ingest selects (COVID-19 X-rays in a
frontal view, before its image checks) and applies the audit's rules (`sources/origin.py`; they are
written in results/README.md, "Rules for the shortcut audit"). A patient counts as labelled when a row
of theirs carries `survival`, as died when it says N.
"""

from __future__ import annotations

import argparse
import collections
import shlex
import sys
from pathlib import Path

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # first: the sources import the image reader, which loads TensorFlow

from common.errors import PipelineError  # noqa: E402
from common.labels import NO_LABEL  # noqa: E402
from components import configs  # noqa: E402
from sources import base, origin, upstream  # noqa: E402


def count(data_dir: Path) -> str:
    table = Path(data_dir) / upstream.METADATA_NAME
    header, every_row = base.read_table(table, (*upstream.REQUIRED_COLUMNS, *origin.ORIGIN_COLUMNS),
                                        upstream.MetadataError, f"the upstream {upstream.METADATA_NAME}")
    rows = [row for _, row in upstream.UpstreamSource(data_dir).select(configs.FRONTAL_VIEWS).rows]
    types = origin.source_types(row for _, row in every_row)
    source, several_sources = origin.first_by_patient(rows, origin.source_of)
    site, several_sites = origin.first_by_patient(rows, lambda row: origin.site_of(row["location"]))
    labelled = {row["patientid"].strip() for row in rows if row["mortality_observed"] != NO_LABEL}
    died = {row["patientid"].strip() for row in rows if row["mortality_observed"] == 1}
    pooled = origin.pooled_sites(site, labelled)
    images = collections.Counter(row["patientid"].strip() for row in rows)
    used_sources = {origin.source_of(row) for row in rows}
    lines = [
        f"# python -m tools.count_sources --data_dir={shlex.quote(str(data_dir))}",
        f"# {upstream.METADATA_NAME}: {len(every_row)} rows; the rows ingest selects (COVID-19 X-rays, frontal "
        f"views, before image checks): {len(rows)} images of {len(images)} patients",
        f"# {len(used_sources)} sources among them: "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(collections.Counter(types[s] for s in used_sources).items()))
        + f"; patients whose rows name more than one source: {len(several_sources)}, more than one site: "
        f"{len(several_sites)} (each counted by its first row)",
        "",
    ]
    for title, group in (("source type", {p: types[s] for p, s in source.items()}),
                         (f"site (fewer than {origin.MIN_SITE_PATIENTS} labelled patients pooled)", pooled),
                         ("site, unpooled", site)):
        by_group = collections.defaultdict(set)
        for patient, name in group.items():
            by_group[name].add(patient)
        lines.append(f"{'by ' + title:<52} {'images':>7} {'patients':>9} {'labelled':>9} {'died':>5} {'survived':>9}")
        for name, patients in sorted(by_group.items(), key=lambda item: (-len(item[1] & labelled), item[0])):
            n_labelled, n_died = len(patients & labelled), len(patients & died)
            lines.append(f"  {name:<50} {sum(images[p] for p in patients):>7} {len(patients):>9} {n_labelled:>9} "
                         f"{n_died:>5} {n_labelled - n_died:>9}")
        lines.append(f"  {'total':<50} {len(rows):>7} {len(images):>9} {len(labelled):>9} {len(died):>5} "
                     f"{len(labelled) - len(died):>9}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="A folder holding the upstream metadata.csv.")
    args = parser.parse_args(argv)
    try:
        print(count(args.data_dir))
    except PipelineError as error:
        print(f"count_sources: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
