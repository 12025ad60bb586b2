"""Rebuild the embedded sample from the local mirror of the upstream data set.

    python tools/make_sample.py --mirror ../shared/data/covid-chestxray-dataset

Takes whole patients (so a patient-grouped split is possible), only images
whose licence allows redistribution of a modified copy (CC BY, and CC BY-NC-SA
where CC BY has too few deaths), downscales them to <= 512 px on the longer
side, keeps each chosen row of `metadata.csv` unchanged, and writes a NOTICE
with the doi, url and licence of every file.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from PIL import Image

# patient id -> how many of their frontal COVID-19 X-rays to keep (in file order).
DIED = {"244": 2, "246": 2, "331b": 2, "178": 5}
SURVIVED = {"250": 3, "245": 2, "221": 2, "226": 2, "235": 2, "249": 2, "263": 2, "219": 2, "222": 2,
            "230": 2, "254": 2}
UNLABELLED = {"253": 3, "264": 2, "270": 2, "225": 1}
# Rows that ingest must filter out: a lateral view, a CT, another finding.
FILTERED = ("lateral", "ct", "other_finding")
REDISTRIBUTABLE = ("CC BY 3.0", "CC BY 4.0", "CC BY", "CC BY-NC-SA", "CC BY-NC-SA 4.0")
LONGEST_SIDE = 512


def _is_covid_frontal(row):
    return row["finding"].startswith("COVID-19") and row["modality"] == "X-ray" and row["view"] != "L"


def choose_rows(rows, images_dir):
    quota = {**DIED, **SURVIVED, **UNLABELLED}
    taken, chosen = {p: 0 for p in quota}, []
    for row in rows:
        patient = row["patientid"]
        if (patient in quota and taken[patient] < quota[patient] and _is_covid_frontal(row)
                and (images_dir / row["filename"]).is_file()):
            taken[patient] += 1
            chosen.append(row)
    short = {p: (taken[p], n) for p, n in quota.items() if taken[p] != n}
    if short:
        raise SystemExit(f"mirror lacks images for patients {short}")
    extras = {
        "lateral": lambda r: r["finding"].startswith("COVID-19") and r["view"] == "L" and r["modality"] == "X-ray"
        and (images_dir / r["filename"]).is_file(),
        "ct": lambda r: r["modality"] == "CT",
        "other_finding": lambda r: not r["finding"].startswith("COVID-19") and r["modality"] == "X-ray",
    }
    for kind in FILTERED:
        chosen.append(next(r for r in rows if r["license"] in REDISTRIBUTABLE and extras[kind](r)))
    return chosen


def downscale(source: Path) -> bytes:
    image = Image.open(source)
    fmt = image.format
    image.thumbnail((LONGEST_SIDE, LONGEST_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "sample_data" / "covid-chestxray-sample")
    args = parser.parse_args()
    with open(args.mirror / "metadata.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)
    chosen = choose_rows(rows, args.mirror / "images")
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    notice = ["# Image licences\n",
              "Each image is a copy, downscaled to at most 512 px on its longer side, of an image of the",
              "COVID-19 Image Data Collection (Cohen et al., arXiv:2006.11988; github.com/ieee8023/covid-chestxray-dataset,",
              "upstream commit 584034a). `metadata.csv` holds the upstream rows unchanged (CC BY-NC-SA 4.0).",
              "Research use only; not for clinical use.\n",
              "| file | licence | doi | url |", "|---|---|---|---|"]
    for row in chosen:
        source = args.mirror / "images" / row["filename"]
        if not source.is_file():
            continue  # CT and other-finding rows have no image in the mirror; ingest filters them first
        (args.out / "images" / row["filename"]).write_bytes(downscale(source))
        notice.append(f"| {row['filename']} | {row['license']} | {row['doi']} | {row['url']} |")
    with open(args.out / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(chosen)
    (args.out / "NOTICE.md").write_text("\n".join(notice) + "\n")
    print(f"{len(chosen)} rows, {len(list((args.out / 'images').iterdir()))} images -> {args.out}")


if __name__ == "__main__":
    main()
