"""The model card: what a served model is for, what it was made from, how good it is and how it fails.

Export writes it into every SavedModel it makes, `assets.extra/model_card.json` (for programs) and
`assets.extra/model_card.md` (for people), so the card travels with each pushed version (TF Serving
ignores `assets.extra/` apart from its warmup file); the report shows the same card as a section.
`build` gathers it from the stages' records, `sections` lays it out once for both renderings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from components.evaluate.outputs import OBSERVED

JSON_NAME = "assets.extra/model_card.json"
MARKDOWN_NAME = "assets.extra/model_card.md"
RANDOM_INITIALISATION = "random initialisation"

RESEARCH_ONLY_NOTICE = ("Research use only. This is not a medical device and must not be used to make decisions "
                        "about patients. The data set is a small public collection of case reports, not a clinical "
                        "cohort.")
INTENDED_USE = ("Reproducing and checking the study of Olowolayemo et al. (COVID-19 mortality from chest X-rays on "
                "a small data set): ranking frontal (AP/PA) chest X-rays of patients with COVID-19 by the "
                "probability that the patient died, for research on methods. Not for triage, diagnosis, "
                "prognosis or any decision about a patient.")
FAILURE_MODES = (
    "Small data: a few hundred X-rays of a few hundred patients at most, few deaths; the intervals are wide and a "
    "different sample could rank differently.",
    "Single source: one public collection of case reports (ieee8023/covid-chestxray-dataset), images taken from "
    "papers and web sites, not a hospital's consecutive patients; other scanners, sites and populations are "
    "unseen.",
    "Frontal views only (PA and AP): lateral views and CT are not what the model was trained on; it answers for "
    "any image it is sent, so the caller must send only frontal chest X-rays.",
    "Not validated prospectively, nor on any external cohort: every number above is cross-validated on the "
    "training collection.",
    "The label is the outcome the case report gives, which depends on treatment and on what happened after the "
    "X-ray; the image shows neither, and most reports give no outcome at all.",
)


def weights_provenance(train_weights: str | None) -> dict[str, str]:
    """{'initialisation': short name, 'detail': the train stage's sentence}, e.g. 'ImageNet, partial
    (stage-4 3x3 convs random)' for the shared partial file, 'random initialisation' without --weights."""
    detail = (train_weights or "").strip()
    if not detail or not detail.startswith("weights: "):
        return {"initialisation": RANDOM_INITIALISATION, "detail": detail or "no pretrained weights"}
    description = detail.splitlines()[0].removeprefix("weights: ")  # e.g. 'ImageNet, partial: A; B random'
    origin, _, parts = description.partition(", partial: ")
    if parts:
        fresh = parts.rpartition("; ")[2].removesuffix(" random")
        return {"initialisation": f"{origin}, partial ({fresh} random)", "detail": detail}
    return {"initialisation": description.removesuffix(", full"), "detail": detail}


def data_counts(predictions: Mapping[str, np.ndarray], train_counts: Mapping[str, int] | None = None) -> dict[str, int]:
    """Images, patients and deaths among the rows the model was trained and cross-validated on: the validated
    rows (`predictions`) and the imputed rows that only train (`train_counts`, the train summary's counts;
    runs before in-fold imputation validated theirs, so their predictions hold them). Deaths are validated ones."""
    labels, patients = np.asarray(predictions["label"]), np.asarray(predictions["patient"])
    observed = np.asarray(predictions["label_source"]) == "observed"
    trained_only = (train_counts or {}).get("imputed_rows", 0)
    return {"images": int(len(labels)) + trained_only,
            "patients": int(len(set(patients.tolist()))) + (train_counts or {}).get("imputed_only_patients", 0),
            "images_of_deaths": int(np.sum(labels == 1)),
            "patients_who_died": int(len(set(patients[labels == 1].tolist()))),
            "observed_labels": int(np.sum(observed)), "imputed_labels": int(np.sum(~observed)) + trained_only}


def _finite_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def metrics_with_intervals(evaluation: Mapping[str, Any] | None,
                           flat_metrics: Mapping[str, float] | None) -> dict[str, Any]:
    """The evaluation's headline metrics with their 95% intervals (or the bare values export was given)."""
    if evaluation is None:
        return {"source": "export parameters (no evaluation)", "interval": None,
                "values": {name: {"value": value} for name, value in (flat_metrics or {}).items()}}
    unit = evaluation.get("sets", {}).get(OBSERVED, {}).get("bootstrap", {}).get("unit", "image")
    values = {name: {"value": _finite_or_none(m.get("estimate")), "ci_low": _finite_or_none(m.get("ci_low")),
                     "ci_high": _finite_or_none(m.get("ci_high"))}
              for name, m in evaluation.get("metrics", {}).items() if isinstance(m, Mapping)}
    return {"source": f"cross-validated, out-of-fold, observed labels, {evaluation.get('split')} split",
            "interval": f"95% bootstrap interval, {unit}s resampled", "values": values}


def calibration(evaluation: Mapping[str, Any] | None) -> dict[str, float]:
    """Every scalar the evaluation gives about calibration (ECE, Brier score, base rate, ...)."""
    found = (evaluation or {}).get("sets", {}).get(OBSERVED, {}).get("calibration", {})
    return {name: float(value) for name, value in found.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def decision_rule(threshold: float) -> str:
    """The served `class` in words: common/decision.called_died is `probability >= threshold`."""
    return (f"class 1 ('died') when probability_of_death >= {threshold:g}, else class 0 ('survived'); "
            "class -1 with an error message when the image could not be read")


def failure_modes(split: str | None, weights_initialisation: str, counts: Mapping[str, int]) -> list[str]:
    """The general limits, and those of this run (image split, random weights, imputed labels)."""
    modes = list(FAILURE_MODES)
    if split == "image":
        modes.append("Patient leakage: the folds were split by image, so one patient's X-rays can sit in training "
                     "and validation at once and the metrics are optimistic; --split=patient avoids it.")
    if weights_initialisation == RANDOM_INITIALISATION:
        modes.append("No pretrained weights: the network started from random initialisation, unlike the study's "
                     "ImageNet start.")
    elif "partial" in weights_initialisation:
        modes.append(f"Weights {weights_initialisation}: not the study's full ImageNet initialisation.")
    if counts.get("imputed_labels"):
        modes.append(f"{counts['imputed_labels']} training labels were imputed by a RandomForest, not observed; "
                     "the metrics use observed labels only.")
    return modes


def build(*, model_name: str, status: str, blessed: bool, export_record: Mapping[str, Any],
          train_summary: Mapping[str, Any], predictions: Mapping[str, np.ndarray],
          evaluation: Mapping[str, Any] | None, data: Mapping[str, str] | None) -> dict[str, Any]:
    """The card of one exported model, from the export record and the train, evaluate and data records."""
    counts = data_counts(predictions, train_summary.get("counts"))
    weights = weights_provenance(train_summary.get("weights"))
    threshold = float(export_record["threshold"])
    return {
        "model": {"name": model_name, "status": status, "blessed": blessed,
                  "ensemble": export_record["ensemble"], "members": export_record["members"],
                  "image_size": export_record["image_size"], "bless_thresholds": export_record["bless_thresholds"]},
        "intended_use": INTENDED_USE,
        "notice": RESEARCH_ONLY_NOTICE,
        "data": {**(data or {}), "variant": train_summary.get("variant"), "labels": train_summary.get("labels"),
                 "split": train_summary.get("split"), **counts},
        "weights": weights,
        "metrics": metrics_with_intervals(evaluation, export_record.get("metrics")),
        "calibration": calibration(evaluation),
        "decision": {"threshold": threshold, "rule": decision_rule(threshold)},
        "known_failure_modes": failure_modes(train_summary.get("split"), weights["initialisation"], counts),
    }


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def sections(card: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]] | Sequence[str]]]:
    """(title, [(label, text)] or [item]) in reading order: the one layout of the Markdown and HTML cards."""
    model, data, metrics = card["model"], card["data"], card["metrics"]
    interval = f" ({metrics['interval']})" if metrics["interval"] else ""
    metric_rows = [(name, _number(m.get("value")) + (f" [{_number(m.get('ci_low'))}, {_number(m.get('ci_high'))}]"
                                                     if "ci_low" in m else ""))
                   for name, m in metrics["values"].items()]
    data_rows = [(label, str(data[key])) for key, label in (
        ("folder", "data folder"), ("content_sha256", "content sha256 (metadata.csv and every image)"),
        ("variant", "variant"), ("labels", "labels"), ("split", "cross-validation split"),
        ("images", "images trained and cross-validated on"), ("patients", "patients"), ("images_of_deaths", "images of patients who died"),
        ("patients_who_died", "patients who died"), ("observed_labels", "observed labels"),
        ("imputed_labels", "imputed labels")) if data.get(key) is not None]
    return [
        ("Status", [("model name", model["name"]), ("status", model["status"]),
                    ("ensemble", f"{model['ensemble']} ({len(model['members'])} model(s)), "
                                 f"{model['image_size']} px input")]),
        ("Intended use", [card["intended_use"], card["notice"]]),
        ("Data", data_rows),
        ("Weights", [("initialisation", card["weights"]["initialisation"]), ("detail", card["weights"]["detail"])]),
        (f"Metrics{interval}", [("source", metrics["source"]), *metric_rows]),
        ("Calibration", [(name, _number(value)) for name, value in card["calibration"].items()]
         or [("calibration", "not evaluated")]),
        ("Decision threshold", [("threshold", f"{card['decision']['threshold']:g}"),
                                ("meaning", card["decision"]["rule"])]),
        ("Known failure modes", card["known_failure_modes"]),
    ]


def to_markdown(card: Mapping[str, Any]) -> str:
    lines = [f"# Model card: {card['model']['name']}", "", f"**{card['model']['status']}**"]
    for title, rows in sections(card):
        lines += ["", f"## {title}", ""]
        lines += [f"- **{row[0]}**: {row[1]}" if isinstance(row, tuple) else f"- {row}" for row in rows]
    return "\n".join(lines) + "\n"


def write(saved_model_dir: Path, card: Mapping[str, Any]) -> None:
    """Both renderings into the SavedModel (still inside the export stage's temporary folder)."""
    json_path = Path(saved_model_dir) / JSON_NAME
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    (Path(saved_model_dir) / MARKDOWN_NAME).write_text(to_markdown(card))


def read(saved_model_dir: Path) -> dict[str, Any]:
    return json.loads((Path(saved_model_dir) / JSON_NAME).read_text())
