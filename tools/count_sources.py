"""Count patients and deaths by source type and by site, as the shortcut audit will see them.

    python -m tools.count_sources --data_dir=../shared/data/covid-chestxray-dataset

Reads `metadata.csv` only (no image is opened), keeps the rows ingest selects (COVID-19 X-rays in a
frontal view, before its image checks) and applies the audit's rules (`sources/origin.py`, per patient in
`components/evaluate/origins.py`, which the audit reads too; they are written in results/README.md, "Rules for
the shortcut audit"). A patient counts as labelled
when a row of theirs carries `survival`, as died when it says N.
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
from components.evaluate import origins  # noqa: E402
from sources import origin, upstream  # noqa: E402


def count(data_dir: Path) -> str:
    found = origins.read_origins(data_dir)
    rows, types, site = found.selected_rows, found.source_type_of, found.site
    several_sources, several_sites = found.several_sources, found.several_sites
    labelled, died, pooled = found.labelled, found.died, found.pooled_site
    images = collections.Counter(row["patientid"].strip() for row in rows)
    used_sources = {origin.source_of(row) for row in rows}
    lines = [
        f"# python -m tools.count_sources --data_dir={shlex.quote(str(data_dir))}",
        f"# {upstream.METADATA_NAME}: {found.metadata_rows} rows; the rows ingest selects (COVID-19 X-rays, frontal "
        f"views, before image checks): {len(rows)} images of {len(images)} patients",
        f"# {len(used_sources)} sources among them: "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(collections.Counter(types[s] for s in used_sources).items()))
        + f"; patients whose rows name more than one source: {len(several_sources)}, more than one site: "
        f"{len(several_sites)} (each counted by its first row)",
        "",
    ]
    for title, group in (("source type", found.source_type),
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
