"""External validations of the served model, for the app's page: the folders `python -m pipeline.validate` wrote.

`read(folders, sha256)` reads each folder's `validation.json`, checks that it validated this very model (the
SavedModel's sha256 it records: `components/validate.py`'s `model_identity`, the hash `pipeline.score` names its
scores by) and keeps what the page shows of it: the site's code, its images, patients and deaths, ROC AUC, the
calibration slope, observed/expected deaths and calibration-in-the-large with their intervals, Riley et al.'s
events statement and any update made there. Never a path, a patient or an image name.

A folder that cannot be shown is refused (`ValidationRefused`) with its reason named first, so the app stops at
start-up with one line rather than show evidence of another model: `no_validation_json`, `unreadable_validation_json`,
`no_model_identity` (written before validate recorded one) or `another_model`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

VALIDATION_JSON = "validation.json"  # components/validate.py's VALIDATION_NAME (not imported: it loads the pipeline)
# (validation.json's name, the page's label), at the image level: the development metrics' level.
METRICS = (("roc_auc", "ROC AUC"), ("calibration_slope", "calibration slope (1 = ideal)"),
           ("o_e_ratio", "observed / expected deaths (1 = ideal)"),
           ("calibration_in_the_large", "calibration-in-the-large (0 = ideal)"))


class ValidationRefused(Exception):
    """A `--validations` folder the page does not show: `reason: detail`, one line."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class SiteValidation:
    """What the page shows of one external validation."""

    site: str | None  # validate's --site code; None when it was not given
    date: str | None
    images: int
    patients: int
    images_of_deaths: int
    patients_who_died: int
    metrics: dict[str, dict[str, float | None]]  # name -> {'value', 'ci_low', 'ci_high'}, the card's shape
    resamples: int | None
    events: str | None  # Riley et al.'s statement, as validate wrote it
    update: str | None  # what `--update` did there, when it was asked for


def read(folders: Sequence[str | Path], sha256: str) -> list[SiteValidation]:
    """Each folder's validation of the model whose `pipeline.score.model_sha256` is `sha256`; refuses the first
    folder that is not one."""
    return [read_one(Path(folder), sha256) for folder in folders]


def read_one(folder: Path, sha256: str) -> SiteValidation:
    path = folder / VALIDATION_JSON
    if not path.is_file():
        raise ValidationRefused("no_validation_json", f"{folder} holds no {VALIDATION_JSON}: give a folder written by "
                                "`python -m pipeline.validate --output_dir=...`")
    try:
        record = json.loads(path.read_text())
        model = record["model"]
        recorded = model.get("sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValidationRefused("unreadable_validation_json", f"{path} is not a validation record ({error})") from None
    if not recorded:
        raise ValidationRefused("no_model_identity", f"{path} records no sha256 of the model it validated (written "
                                "before validate recorded one): run the same `python -m pipeline.validate` command "
                                "again (its scores are reused)")
    if recorded != sha256:
        validated = " ".join(str(x) for x in (model.get("name"), model.get("version") and f"version {model['version']}")
                             if x) or "unnamed"
        raise ValidationRefused("another_model", f"{folder} validated another model ({validated}, sha256 "
                                f"{recorded[:12]}), not the one served (sha256 {sha256[:12]}): give the validations "
                                "of the served model, or serve the model they validated")
    try:
        return _site_validation(record)
    except (KeyError, TypeError, ValueError) as error:
        raise ValidationRefused("unreadable_validation_json", f"{path} lacks {error}") from None


def _site_validation(record: Mapping[str, Any]) -> SiteValidation:
    images, patients = record["images"], record["patients"]
    metrics = {name: {"value": _finite(images["estimate"][name]), "ci_low": _finite(images["intervals"][name]["low"]),
                      "ci_high": _finite(images["intervals"][name]["high"])} for name, _ in METRICS}
    date = record.get("provenance", {}).get("date")
    return SiteValidation(site=record.get("site"), date=date[:10] if date else None, images=int(images["n"]),
                          patients=int(images["patients"]), images_of_deaths=int(images["events"]),
                          patients_who_died=int(patients["events"]), metrics=metrics,
                          resamples=record.get("bootstrap_resamples"), events=record.get("events"),
                          update=_update(record.get("update"), record.get("pushed")))


def _update(update: Mapping[str, Any] | None, pushed: Mapping[str, Any] | None) -> str | None:
    if not update:
        return None
    if pushed:
        return (f"updated there ({update['method']}, {update['chosen_by']}) and served as version "
                f"{pushed['pushed_version']} of {pushed['model_name']}")
    return f"update asked for ({update['requested']}): {update.get('note') or 'nothing pushed'}"


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
