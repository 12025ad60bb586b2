"""Ages as the upstream collection writes them: imputation's age bins, the age + sex baseline and the TFDS
builder read them the same way."""

from __future__ import annotations

import re


def parse_age(value: str) -> float | None:
    """Numbers, `>80` (taken as 81) and decades such as `60s` (taken as 65); else None."""
    text = value.strip().lower()
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)", text):
        return float(match.group(1))
    if match := re.fullmatch(r"(?:>|over\s*)(\d+)\+?", text) or re.fullmatch(r"(\d+)\+", text):
        return float(match.group(1)) + 1
    if match := re.fullmatch(r"(\d+)0'?s", text):
        return float(match.group(1)) * 10 + 5
    return None
