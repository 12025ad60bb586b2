"""`python -m pipeline.manifest`: a hospital's manifest, inside the hospital.

    python -m pipeline.manifest --lookup pt-0123456789abcdef img-fedcba9876543210.dcm \
        --data_dir=DIR --pseudonym_key=~/.covid_cxr/pseudonym.key

maps pseudonyms found in the pipeline's outputs back to the patient ids and image paths of DIR's
`manifest.csv` (sources/manifest.py). What it prints identifies patients: it is never run into a
shared folder by the pipeline. (A `--dicom_dir` mode, building a manifest from a DICOM export, is
meant to join it here.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import pseudonym
from common.errors import PipelineError
from sources.manifest import ManifestSource


def lookup(data_dir: Path, key_path: Path, names: list[str]) -> dict[str, str]:
    """Pseudonyms -> patient ids / image paths; names unknown to this manifest and key are left out."""
    return ManifestSource(Path(data_dir).resolve(), pseudonym.load_key(key_path)).lookup(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.manifest", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)  # one mode per run (--lookup, so far)
    mode.add_argument("--lookup", nargs="+", metavar="PSEUDONYM",
                      help="Map these pseudonyms back to patient ids / image paths.")
    parser.add_argument("--data_dir", required=True, type=Path, help="The folder holding manifest.csv.")
    parser.add_argument("--pseudonym_key", type=Path, default=pseudonym.DEFAULT_KEY_PATH,
                        help="The key the pseudonyms were made with (default: %(default)s).")
    args = parser.parse_args(argv)
    try:
        found = lookup(args.data_dir, args.pseudonym_key, args.lookup)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in args.lookup:
        print(f"{name}\t{found.get(name, '(not in this manifest with this key)')}")
    return 0 if len(found) == len(set(args.lookup)) else 1


if __name__ == "__main__":
    sys.exit(main())
