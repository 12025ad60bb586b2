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

from components.evaluate.outputs import OBSERVED, RECALIBRATED

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


HOSPITAL_NOTICE = ("Research use only. This is not a medical device and must not be used to make decisions about "
                   "patients. It was trained on the hospital's own data and validated on nothing else.")
HOSPITAL_INTENDED_USE = ("Research on the hospital's own data with the method of Olowolayemo et al.: ranking frontal "
                         "(AP/PA) chest X-rays of the hospital's patients with COVID-19 by the probability that the "
                         "patient died, to study whether the method carries over to them. Not for triage, diagnosis, "
                         "prognosis or any decision about a patient.")
HOSPITAL_FAILURE_MODES = (
    "Small data: the intervals are as wide as the hospital's own numbers of images and deaths make them; a "
    "different sample could rank differently.",
    "The hospital's own data: the patients, scanners and sites of one export (the sites above); other hospitals, "
    "scanners, periods and populations are unseen.",
    FAILURE_MODES[2],
    "Not validated prospectively, nor on any external cohort: every number above is cross-validated on the "
    "hospital's own data.",
    "The label is the outcome the hospital's outcomes table gives (`died`), which depends on treatment and on "
    "what happened after the X-ray; the image shows neither.",
)


def is_hospital_data(data: Mapping[str, Any] | None) -> bool:
    """Whether the model was made from a manifest (the hospital's own data) rather than the public collection."""
    return (data or {}).get("source") == "manifest"


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
    rows (`predictions`) and the rows that only train (`train_counts`, the train summary's counts: imputed
    labels, and with --aux_targets images with an auxiliary target but no survival label; runs before in-fold
    imputation validated their imputed rows, so their predictions hold them). Deaths are validated ones."""
    labels, patients = np.asarray(predictions["label"]), np.asarray(predictions["patient"])
    observed = np.asarray(predictions["label_source"]) == "observed"
    counts = train_counts or {}
    imputed, aux_only = counts.get("imputed_rows", 0), counts.get("aux_only_rows", 0)
    return {"images": int(len(labels)) + imputed + aux_only,
            "patients": int(len(set(patients.tolist()))) + counts.get(  # the older summaries' name for it
                "trained_only_patients", counts.get("imputed_only_patients", 0)),
            "images_of_deaths": int(np.sum(labels == 1)),
            "patients_who_died": int(len(set(patients[labels == 1].tolist()))),
            "observed_labels": int(np.sum(observed)), "imputed_labels": int(np.sum(~observed)) + imputed,
            **({"auxiliary_target_only_images": aux_only} if aux_only else {})}


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
    """Every scalar the evaluation gives about calibration (ECE, Brier score, base rate, ...) of the out-of-fold
    probabilities, and, prefixed, of the recalibrated ones cross-fitted (what the served probabilities do when
    export recalibrates)."""
    sets = (evaluation or {}).get("sets", {})

    def scalars(name: str, prefix: str) -> dict[str, float]:
        found = sets.get(name, {}).get("calibration", {})
        return {prefix + key: float(value) for key, value in found.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)}

    return {**scalars(OBSERVED, ""), **scalars(RECALIBRATED, "recalibrated_cross_fitted_")}


def decision_rule(threshold: float) -> str:
    """The served `class` in words: common/decision.called_died is `probability >= threshold`."""
    return (f"class 1 ('died') when probability_of_death >= {threshold:g}, else class 0 ('survived'); "
            "class -1 with an error message when the image could not be read")


def failure_modes(split: str | None, weights_initialisation: str, counts: Mapping[str, int],
                  hospital_data: bool = False) -> list[str]:
    """The general limits (of the public collection or of the hospital's own data), and those of this run
    (image split, random weights, imputed labels)."""
    modes = list(HOSPITAL_FAILURE_MODES if hospital_data else FAILURE_MODES)
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
          evaluation: Mapping[str, Any] | None, data: Mapping[str, str] | None,
          case_mix: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The card of one exported model, from the export record and the train, evaluate and data records; the case
    mix (`validation.case_mix` of the development rows) is what an external validation compares its site with."""
    counts = data_counts(predictions, train_summary.get("counts"))
    weights = weights_provenance(train_summary.get("weights"))
    threshold = float(export_record["threshold"])
    hospital_data = is_hospital_data(data)
    return {
        "model": {"name": model_name, "status": status, "blessed": blessed,
                  "ensemble": export_record["ensemble"], "members": export_record["members"],
                  "image_size": export_record["image_size"], "bless_thresholds": export_record["bless_thresholds"],
                  "blessed_on": export_record.get("blessed_on")},
        "intended_use": HOSPITAL_INTENDED_USE if hospital_data else INTENDED_USE,
        "notice": HOSPITAL_NOTICE if hospital_data else RESEARCH_ONLY_NOTICE,
        "data": {**(data or {}), "variant": train_summary.get("variant"), "labels": train_summary.get("labels"),
                 "split": train_summary.get("split"),
                 "auxiliary_targets": (train_summary.get("params") or {}).get("aux_targets") or None, **counts},
        "case_mix": case_mix,
        "recalibration": export_record.get("recalibration"),
        "weights": weights,
        "metrics": metrics_with_intervals(evaluation, export_record.get("metrics")),
        "calibration": calibration(evaluation),
        "decision": {"threshold": threshold, "rule": decision_rule(threshold)},
        "known_failure_modes": failure_modes(train_summary.get("split"), weights["initialisation"], counts,
                                             hospital_data),
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
    data_rows = [(label, ", ".join(data[key]) if isinstance(data[key], list) else str(data[key])) for key, label in (
        ("source", "source"), ("collection", "collection"), ("folder", "data folder (its name)"),
        ("sites", "sites"), ("pseudonym_key_id", "pseudonym key id"),
        ("content_sha256", "content sha256 (the table and every image)"),
        ("variant", "variant"), ("labels", "labels"), ("split", "cross-validation split"),
        ("images", "images trained and cross-validated on"), ("patients", "patients"), ("images_of_deaths", "images of patients who died"),
        ("patients_who_died", "patients who died"), ("observed_labels", "observed labels"),
        ("imputed_labels", "imputed labels"),
        ("auxiliary_targets", "auxiliary training targets (never inputs; only death is served)"),
        ("auxiliary_target_only_images", "images trained on auxiliary targets only (no survival label)"))
        if data.get(key) not in (None, [])]
    status_rows = [("model name", model["name"]), ("status", model["status"]),
                   ("ensemble", f"{model['ensemble']} ({len(model['members'])} model(s)), "
                                f"{model['image_size']} px input")]
    if model.get("blessed_on"):
        status_rows.append(("blessing compares", model["blessed_on"]))
    return [
        ("Status", status_rows),
        ("Intended use", [card["intended_use"], card["notice"]]),
        ("Data", data_rows),
        *([("Development case mix", case_mix_rows(card["case_mix"]))] if card.get("case_mix") else []),
        *([("Recalibration", recalibration_rows(card["recalibration"]))] if card.get("recalibration") else []),
        *[(f"Update for site {update['site']}", update_rows(update)) for update in card.get("updates", [])],
        ("Weights", [("initialisation", card["weights"]["initialisation"]), ("detail", card["weights"]["detail"])]),
        (f"Metrics{interval}", [("source", metrics["source"]), *metric_rows]),
        ("Calibration", [(name, _number(value)) for name, value in card["calibration"].items()]
         or [("calibration", "not evaluated")]),
        ("Decision threshold", [("threshold", f"{card['decision']['threshold']:g}"),
                                ("meaning", card["decision"]["rule"])]),
        ("Known failure modes", card["known_failure_modes"]),
    ]


def case_mix_rows(mix: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Images, patients, deaths, age, sex, views and missing values, as one site's or the development data's."""
    age = (f"median {mix['age_median']:g} (IQR {mix['age_iqr'][0]:g}-{mix['age_iqr'][1]:g})"
           if mix.get("age_median") is not None else "not known")
    return [("images", str(mix["images"])), ("patients", str(mix["patients"])),
            ("images of patients who died", f"{mix['images_of_deaths']} ({mix['death_rate_images']:.1%})"),
            ("patients who died", str(mix["patients_who_died"])),
            ("age", f"{age}; missing for {mix['age_missing']} image(s)"),
            ("sex", f"{mix['sex']['male']} male, {mix['sex']['female']} female, {mix['sex']['missing']} missing"),
            ("views", ", ".join(f"{view} {count}" for view, count in mix["views"].items()))]


def recalibration_rows(recalibration: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not recalibration["applied"]:
        return [("applied", "no"), ("why not", recalibration["reason"])]
    return [("applied", "yes, inside the served graph; the threshold applies to the recalibrated probability"),
            ("intercept", f"{recalibration['intercept']:.4f}"), ("slope", f"{recalibration['slope']:.4f}"),
            ("fitted on", f"{recalibration.get('fitted_on', '')} ({recalibration['reason']})")]


def update_rows(update: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An update fitted at a site (`pipeline.validate --update`): what, on what, when."""
    return [("method", update["method"]), ("intercept", f"{update['intercept']:.4f}"),
            ("slope", f"{update['slope']:.4f}"),
            ("formula", "served probability = sigmoid(intercept + slope * logit(the previous version's probability))"),
            ("fitted on", f"{update['images']} images of {update['patients']} patients, {update['images_of_deaths']} "
                          f"images of patients who died ({update['patients_who_died']} patients)"),
            ("chosen by", update["chosen_by"]), ("date", update["date"]),
            ("previous version", update["previous_version"])]


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
