"""`python -m pipeline.manifest`: a hospital's manifest, inside the hospital.

    python -m pipeline.manifest --dicom_dir=EXPORT --outcomes=outcomes.csv --key=PatientID \
        --output=EXPORT/manifest.csv

builds `manifest.csv` from a PACS export and an outcomes table (sources/pacs.py), then
`python -m pipeline.run --data_dir=EXPORT` reads it;

    python -m pipeline.manifest --lookup pt-0123456789abcdef img-fedcba9876543210.dcm \
        --data_dir=DIR --pseudonym_key=~/.covid_cxr/pseudonym.key

maps pseudonyms found in the pipeline's outputs back to the patient ids and image paths of DIR's
`manifest.csv` (sources/manifest.py). What either mode prints or writes identifies patients: it is
never run into a shared folder by the pipeline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import pseudonym
from common.errors import PipelineError
from sources import pacs
from sources.manifest import ManifestSource


def lookup(data_dir: Path, key_path: Path, names: list[str]) -> dict[str, str]:
    """Pseudonyms -> patient ids / image paths; names unknown to this manifest and key are left out."""
    return ManifestSource(Path(data_dir).resolve(), pseudonym.load_key(key_path)).lookup(names)


def build_manifest(dicom_dir: Path, outcomes: Path, key: str, output: Path, overwrite: bool) -> None:
    """Write the manifest of a PACS export, after printing what matched and what did not."""
    pacs.refuse_existing(output, overwrite)
    built = pacs.build(dicom_dir, outcomes, key, Path(output).resolve().parent)
    print("\n".join(pacs.summary(built, outcomes, output)))
    pacs.write(built, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.manifest", description=__doc__.split("\n\n")[0],
                                     epilog="Both modes print and write patient ids and file paths: run them "
                                            "inside the hospital, never into a shared folder.")
    mode = parser.add_mutually_exclusive_group(required=True)  # one mode per run
    mode.add_argument("--dicom_dir", type=Path, metavar="EXPORT",
                      help="Build a manifest from every DICOM file under this PACS export (with --outcomes, "
                           "--output). The manifest and the summary printed name patient ids and paths.")
    mode.add_argument("--lookup", nargs="+", metavar="PSEUDONYM",
                      help="Map these pseudonyms back to patient ids / image paths (with --data_dir).")
    parser.add_argument("--outcomes", type=Path, help="CSV: the key column, died (1, 0, blank) and optionally "
                        f"{', '.join(pacs.OUTCOME_COLUMNS)}.")
    parser.add_argument("--key", choices=pacs.KEYS, default="PatientID",
                        help="The DICOM element the outcomes table is keyed by (default: %(default)s).")
    parser.add_argument("--output", type=Path, help="The manifest to write (then --data_dir=its folder).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    parser.add_argument("--data_dir", type=Path, help="With --lookup: the folder holding manifest.csv.")
    parser.add_argument("--pseudonym_key", type=Path, default=pseudonym.DEFAULT_KEY_PATH,
                        help="With --lookup: the key the pseudonyms were made with (default: %(default)s).")
    args = parser.parse_args(argv)
    if args.dicom_dir and not (args.outcomes and args.output):
        parser.error("--dicom_dir needs --outcomes and --output")
    if args.lookup and not args.data_dir:
        parser.error("--lookup needs --data_dir")
    try:
        if args.dicom_dir:
            build_manifest(args.dicom_dir, args.outcomes, args.key, args.output, args.overwrite)
            return 0
        found = lookup(args.data_dir, args.pseudonym_key, args.lookup)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in args.lookup:
        print(f"{name}\t{found.get(name, '(not in this manifest with this key)')}")
    return 0 if len(found) == len(set(args.lookup)) else 1


if __name__ == "__main__":
    sys.exit(main())
