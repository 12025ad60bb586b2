"""External validation of an exported model on a new site's labelled X-rays, and its update for that site.

`pipeline/validate.py` is the front door: it resolves the model and scores the site's images through the served
signature (`pipeline.score`); this module does the rest. The site's data folder goes through the pipeline's own
data source and ingest, wired as `pipeline.run` wires them (any data source ingest reads; this module reads its
examples rows), so the same images are kept and rejected as in development. `validation_record` computes what TRIPOD+AI and Riley et al. (BMJ 2024) ask of an external
validation with the evaluate package's code (`components/evaluate/validation.py`); `update_record` fits an update
(Vergouwe et al. 2017) and estimates its calibration on patients it was not fitted on; `push_update` serves it as
the next version of the same model name, the update inside the graph (`serving/update.py`), its card naming the
site.
"""

from __future__ import annotations

import csv
import datetime
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import sources
from common import files
from common.decision import called_died
from common.errors import PipelineError
from components import model_card
from components.evaluate import clinical_baseline
from components.evaluate import component as evaluate_component
from components.evaluate import decision as evaluate_decision
from components.evaluate import plots as evaluate_plots
from components.evaluate import validation
from serving import push as serving_push
from serving import update as serving_update

VALIDATION_NAME = "validation.json"
PREDICTIONS_NAME = "predictions.csv"
CALIBRATION_FIGURE = "calibration_curve.png"
DECISION_FIGURE = "decision_curve.png"
UPDATED_MODEL_DIR = "updated_saved_model"
UPDATE_CHOICES = ("intercept", "logistic", "auto")


# ---------------------------------------------------------------- the site's rows
def labelled_rows(examples: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """Ingest's rows whose outcome is known (died 1 or survived 0): the only rows a validation can use."""
    return [row for row in examples if row["mortality_observed"] in ("0", "1")]


def image_entries(source: sources.Source, rows: Sequence[Mapping[str, str]]) -> list[tuple[str, Path]]:
    """(source_id, image path) of each row, for `pipeline.score`, found through the data source as the TFRecords
    stage finds them (a manifest's images anywhere, by their pseudonymous names)."""
    return [(row["source_id"], source.image_path(row["filename"])) for row in rows]


def scores_name(model_sha256: str) -> str:
    """`pipeline.score`'s output for one model: validating another model in the same folder scores afresh."""
    return f"scores-{model_sha256[:12]}.csv"


def read_scores(path: Path) -> dict[str, tuple[float, str]]:
    """`pipeline.score`'s output: filename -> (probability or NaN, error)."""
    with open(path, newline="") as handle:
        return {row["filename"]: (float(row["probability_of_death"]) if row["probability_of_death"] else np.nan,
                                  row["error"]) for row in csv.DictReader(handle)}


def scored_rows(rows: Sequence[Mapping[str, str]], scores: Mapping[str, tuple[float, str]]) -> dict[str, Any]:
    """Columns of the scored rows (source_id, patient, label, probability, view, age, sex), and the rows the served
    model could not score, with its reason."""
    kept = [row for row in rows if np.isfinite(scores[row["source_id"]][0])]
    not_scored = [{"source_id": row["source_id"], "error": scores[row["source_id"]][1]}
                  for row in rows if not np.isfinite(scores[row["source_id"]][0])]
    if len({row["mortality_observed"] for row in kept}) < 2:
        raise PipelineError(f"--data_dir: the {len(kept)} scored labelled images hold only one outcome; a validation "
                            "needs patients who died and patients who survived")
    age, sex = clinical_baseline.admission_features(kept).T
    columns = {"source_id": np.array([row["source_id"] for row in kept]),
               "patient": np.array([row["patientid"] for row in kept]),
               "label": np.array([int(row["mortality_observed"]) for row in kept]),
               "probability": np.array([scores[row["source_id"]][0] for row in kept]),
               "view": np.array([row["view"] for row in kept]), "age": age, "sex": sex}
    return {"columns": columns, "rows": kept, "not_scored": not_scored}


def patient_level(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per patient, probability the mean of the patient's images (evaluate's patient level)."""
    try:
        return evaluate_component.patient_level({**columns, "fold": np.zeros(len(columns["label"]), int)})
    except ValueError as error:
        raise PipelineError(f"--data_dir: {error}") from None


# ---------------------------------------------------------------- the validation
def model_identity(saved_model_dir: Path, card: Mapping[str, Any] | None, sha256: str) -> dict[str, Any]:
    """What validation.json records of the model it validated: `sha256` (`pipeline.score.model_sha256`: every file's
    path and content, so a copy pushed elsewhere matches and an updated version does not) is what the app compares;
    the card's name and status and the TF Serving version (the folder's number, when it is one) are for people."""
    saved_model_dir = Path(saved_model_dir)
    return {"saved_model": str(saved_model_dir), "sha256": sha256,
            "version": int(saved_model_dir.name) if saved_model_dir.name.isdigit() else None,
            **({"name": card["model"]["name"], "status": card["model"]["status"]} if card else {})}


def level_record(labels, probabilities, patients, threshold: float, resamples: int, seed: int) -> dict[str, Any]:
    return {**validation.summarize(labels, probabilities, patients, threshold, resamples, seed),
            "decision_curve": evaluate_decision.decision_curve(labels, probabilities)}


def validation_record(site: Mapping[str, Any], card: Mapping[str, Any] | None, threshold: float, resamples: int,
                      seed: int) -> dict[str, Any]:
    """Case mix beside the development data's, image- and patient-level statistics with intervals, the flexible
    calibration curve, subgroups and the events statement."""
    columns = site["columns"]
    patients = patient_level(columns)
    images = level_record(columns["label"], columns["probability"], columns["patient"], threshold, resamples, seed)
    mix = validation.case_mix(site["rows"], columns["label"], columns["age"], columns["sex"])
    return {
        "threshold": threshold, "bootstrap_resamples": resamples, "seed": seed, "interval_unit": "patient",
        "case_mix": {"site": mix, "development": (card or {}).get("case_mix")},
        "images": images,
        "patients": level_record(patients["label"], patients["probability"], patients["patient"], threshold,
                                 resamples, seed),
        "calibration_curve": validation.calibration_curve(columns["label"], columns["probability"],
                                                          columns["patient"], resamples, seed),
        "subgroups": validation.subgroups(columns, threshold, resamples, seed),
        "subgroup_rule": f"a subgroup is computed when its images include at least {validation.MIN_EACH_OUTCOME} of "
                         f"patients who died and {validation.MIN_EACH_OUTCOME} of patients who survived",
        "events": validation.events_statement(mix["images_of_deaths"], mix["patients_who_died"]),
        "not_scored": site["not_scored"],
    }


def update_record(columns: Mapping[str, np.ndarray], requested: str, threshold: float, resamples: int,
                  seed: int) -> dict[str, Any]:
    """The update (`auto`: by closed testing), its coefficients, and its calibration on the site: apparent (fitted
    and judged on the same patients) and cross-validated over patients (the honest estimate)."""
    labels, probabilities, patients = columns["label"], columns["probability"], columns["patient"]
    tested = validation.closed_test(labels, probabilities)
    method = tested["chosen"] if requested == "auto" else requested
    record = {"requested": requested, "method": method, "closed_test": tested,
              "chosen_by": ("closed testing (Vergouwe et al. 2017), alpha "
                            f"{tested['alpha']:g}" if requested == "auto" else "the user (--update)")}
    if method == validation.ORIGINAL:
        return {**record, "intercept": 0.0, "slope": 1.0,
                "note": "the site's data do not show the model miscalibrated: the original model is kept, nothing "
                        "is pushed"}
    fitted = validation.fit_update(labels, probabilities, method)
    if not fitted["converged"]:
        raise PipelineError(f"--update={requested}: the {method} fit does not converge on this site (its outcomes are "
                            "separated by the predictions, so no maximum-likelihood update exists); try "
                            "--update=intercept")
    if fitted["slope"] <= 0:
        raise PipelineError(f"--update={requested}: the logistic fit's slope is {fitted['slope']:.3g} on this site, so "
                            "the updated model would rank deaths no better than chance or backwards; nothing is "
                            "pushed (the model does not travel to this site; --update=intercept keeps its ranking)")
    updated = validation.apply_update(probabilities, fitted["intercept"], fitted["slope"])
    honest = validation.cross_validated_update(labels, probabilities, patients, method, seed)
    judged = np.isfinite(honest)  # a fold whose fit on the other patients did not converge has no update
    left_out = int((~judged).sum())
    return {**record, "intercept": fitted["intercept"], "slope": fitted["slope"], "updated": updated,
            "cross_validated": honest,
            "apparent": validation.summarize(labels, updated, patients, threshold, resamples, seed),
            "cross_validated_summary": validation.summarize(np.asarray(labels)[judged], honest[judged],
                                                            np.asarray(patients)[judged], threshold, resamples, seed),
            "cross_validation": f"{min(validation.CROSS_FIT_FOLDS, len(set(patients)))} folds over patients: each "
                                "patient's images updated by a fit on the other patients"
                                + (f"; {left_out} images of folds whose fit did not converge left out" if left_out
                                   else "")}


# ---------------------------------------------------------------- serving the update
def push_update(saved_model_dir: Path, card: Mapping[str, Any] | None, update: Mapping[str, Any], site_code: str,
                site: Mapping[str, Any], serving_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The updated SavedModel, its card naming the site, counts, coefficients and date, pushed as the next version
    of the model's own name (a DEMO model's update stays under the demo name: updating does not bless)."""
    if card is None:
        raise PipelineError(f"--model {saved_model_dir} has no model card ({model_card.JSON_NAME}): its name and "
                            "threshold are unknown, so no update can be pushed")
    mix = validation.case_mix(site["rows"], site["columns"]["label"], site["columns"]["age"], site["columns"]["sex"])
    entry = {"site": site_code, "method": update["method"], "intercept": update["intercept"],
             "slope": update["slope"], "chosen_by": update["chosen_by"],
             "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "previous_version": str(saved_model_dir),
             **{key: mix[key] for key in ("images", "patients", "images_of_deaths", "patients_who_died")}}
    final = Path(out_dir) / UPDATED_MODEL_DIR
    tmp = files.tmp_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        serving_update.write_updated_saved_model(saved_model_dir, tmp, update["intercept"], update["slope"],
                                                 float(card["decision"]["threshold"]))
        model_card.write(tmp, {**card, "updates": [*card.get("updates", []), entry]})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    version, path = serving_push.push(final, Path(serving_dir), card["model"]["name"])
    return {**entry, "model_name": card["model"]["name"], "pushed_version": version, "pushed_to": str(path)}


# ---------------------------------------------------------------- files
def write_predictions(path: Path, columns: Mapping[str, np.ndarray], threshold: float,
                      update: Mapping[str, Any] | None) -> None:
    """One row per scored image: source_id, patient, died, the served probability and class, and with an update
    the updated probability as served and as cross-validated over patients."""
    extra = update is not None and "updated" in update
    with files.atomic_open(path, "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["source_id", "patient_id", "died", "probability_of_death", "class",
                        *(["probability_of_death_updated", "probability_of_death_updated_cross_validated"]
                          if extra else [])])
        for i, source_id in enumerate(columns["source_id"]):
            p = float(columns["probability"][i])
            table.writerow([source_id, columns["patient"][i], int(columns["label"][i]), repr(p), int(called_died(p, threshold)),
                            *([repr(float(update["updated"][i])), repr(float(update["cross_validated"][i]))]
                              if extra else [])])


def write_figures(out_dir: Path, record: Mapping[str, Any], probabilities: np.ndarray) -> None:
    evaluate_plots.flexible_calibration(record["calibration_curve"], probabilities, Path(out_dir) / CALIBRATION_FIGURE,
                                        "Calibration at this site (images)")
    evaluate_plots.decision_curves({"served model": record["images"]["decision_curve"]},
                                   Path(out_dir) / DECISION_FIGURE)


def json_ready(update: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The update record without its per-image arrays (they are in predictions.csv)."""
    if update is None:
        return None
    return {key: value for key, value in update.items() if key not in ("updated", "cross_validated")}
