"""The evaluate artifact's file layout and the names of its metric sets.

Later stages (export, the model card, the report) and the study's tables read an evaluation through these
names, without loading the stage itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVALUATION_NAME = "evaluation.json"
# What each set of evaluation.json holds: the metrics, the reliability diagram's bins, the decision curve's
# threshold probabilities (5% to 50%).
SCORES = ("balanced_accuracy", "roc_auc", "precision", "recall", "f1", "pr_auc", "brier")
RATES = ("tpr", "tnr", "fpr", "fnr")
METRICS = (*SCORES, *RATES)
CALIBRATION_BINS = 10
DECISION_THRESHOLDS = tuple(round(0.05 + 0.01 * i, 2) for i in range(46))
PER_FOLD_NAME = "metrics_per_fold.csv"
SUMMARY_NAME = "metrics_summary.csv"
TTA_PREDICTIONS_NAME = "predictions_tta.csv"
DECISION_CURVE_NAME = "decision_curve.csv"
CALIBRATION_FIGURE = "calibration.png"
DECISION_CURVE_FIGURE = "decision_curve.png"
OBSERVED = "observed_labels"
STUDY_WAY = "study_way_imputed_labels_in_validation"
PATIENT_LEVEL = "patient_level_observed_labels"
OBSERVED_TTA = "observed_labels_tta"
EARLY_IMAGES = "early_images_observed_labels"
# Export's recalibration estimated honestly: fitted on the other folds' out-of-fold predictions, applied to each fold.
RECALIBRATED = "recalibrated_cross_fitted_observed_labels"
AGE_SEX = "age_sex_observed_labels"
IMAGE_AGE_SEX = "image_plus_age_sex_observed_labels"
# With repeated cross-validation: the table of every repeat, and the admission baselines under `baselines`.
REPEATS_TABLE_NAME = "metrics_repeats.csv"
REPEATED_AGE_SEX, REPEATED_IMAGE_AGE_SEX = "age_sex", "image_age_sex"
MODEL_NAMES = {OBSERVED: "image model", AGE_SEX: "age + sex", IMAGE_AGE_SEX: "image + age + sex"}
# The first-week images (fixed before any result was seen: is risk readable from the X-ray a triage decision
# would use?). Metadata `offset`: days since symptom onset or admission; negative = before it.
EARLY_OFFSET_DAYS = 7


def read_evaluation(evaluate_dir: Path) -> dict[str, Any]:
    """An evaluate artifact's `evaluation.json`."""
    return json.loads((Path(evaluate_dir) / EVALUATION_NAME).read_text())
