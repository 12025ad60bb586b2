"""The study's published numbers (study/published_results.csv), looked up by variant and architecture.

One reader for the report (Table 1 beside our metrics) and for `pipeline/study.py` (Tables 1 and 2).
"""

from __future__ import annotations

import csv

from components import configs

PUBLISHED_RESULTS = configs.REPO_ROOT / "study" / "published_results.csv"
PAPER_DATA = {"observed": "original", "observed+imputed": "imputed"}  # our labels -> the paper's "data"
PAPER_BALANCING = {"none": "none", "class_weights": "weights", "resample": "resample"}


def published_rows(variant: str, arch: str = "resnet18", table: str = "1") -> dict[str, dict[str, str]]:
    """The study's rows of `table` for this variant and architecture, keyed by split (train, test); values as
    printed (strings, empty where the paper gives none)."""
    labels, balancing = configs.VARIANTS[variant]
    wanted = (table, arch, PAPER_DATA[labels], PAPER_BALANCING[balancing])
    with open(PUBLISHED_RESULTS, newline="") as handle:
        return {row["split"]: row for row in csv.DictReader(handle)
                if (row["table"], row["model"], row["data"], row["balancing"]) == wanted}
