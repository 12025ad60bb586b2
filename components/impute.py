"""Impute: the study's RandomForest fills in the missing mortality labels.

Features are the four clinical flags and the age bin, exactly the study's.
The report puts the cross-validated accuracy (the study's ~0.925) beside the
balanced accuracy and the majority-class baseline, because with 80% survivors
accuracy alone says little, and adds a patient-grouped CV, because several
images of one patient on both sides of a split flatter the score.

Output `labels.csv`: one row per usable image with the observed label (-1 if
none), the label a variant trains on (observed, else imputed), its source and
the forest's probability of death. That is the study's way, one forest fitted on
every observed label before cross-validation, kept for the record and for this
report; the imputed variants train on labels the same forest
(`common/imputation_forest.py`) gives when fitted inside each training fold
(`components/train/in_fold_imputation.py`). Data without the four flags (a manifest may
leave them out) cannot be imputed: its unlabelled images keep -1 with source
`none`, the report says so, and the imputed variants refuse to train.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn import metrics, model_selection

from common import files, imputation_forest
from common.errors import PipelineError
from common.labels import NO_LABEL
from components import base, ingest

LABELS_NAME = "labels.csv"
REPORT_NAME = "imputation_report.json"
LABEL_COLUMNS = ("source_id", "patientid", "mortality_observed", "mortality", "label_source", "imputed_probability")

def _cv_scores(forest, x, y, splitter, groups=None) -> dict[str, float]:
    """Fold means; balanced accuracy only over folds that hold both classes (small, grouped data)."""
    predicted = np.empty_like(y)
    accuracy, balanced = [], []
    for train, test in splitter.split(x, y, groups):
        forest.fit(x[train], y[train])
        fold_prediction = forest.predict(x[test])
        predicted[test] = fold_prediction
        accuracy.append(metrics.accuracy_score(y[test], fold_prediction))
        if len(np.unique(y[test])) == 2:
            balanced.append(metrics.balanced_accuracy_score(y[test], fold_prediction))
    return {
        "accuracy": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)),
        "balanced_accuracy": float(np.mean(balanced)), "balanced_accuracy_std": float(np.std(balanced)),
        "folds_with_one_class": len(accuracy) - len(balanced),
        "recall_died": float(metrics.recall_score(y, predicted, zero_division=0)),
    }


def impute(rows: Sequence[Mapping[str, str]], seed: int, n_estimators: int, folds: int) -> dict[str, Any]:
    observed = np.array([int(row["mortality_observed"]) for row in rows])
    x = imputation_forest.features(rows)
    labelled = observed != NO_LABEL
    x_lab, y_lab = x[labelled], observed[labelled]
    groups = np.array([row["patientid"] for row in rows])[labelled]
    if len(np.unique(y_lab)) < 2 or np.bincount(y_lab).min() < folds:
        raise PipelineError(
            f"impute: need at least {folds} labelled images of each class for {folds}-fold CV; "
            f"have {int((y_lab == 0).sum())} survived and {int((y_lab == 1).sum())} died"
        )
    forest = imputation_forest.make_forest(seed, n_estimators)
    by_image = _cv_scores(forest, x_lab, y_lab, model_selection.StratifiedKFold(folds, shuffle=True, random_state=seed))
    by_patient = None
    if len(np.unique(groups)) >= folds:
        by_patient = _cv_scores(
            forest, x_lab, y_lab, model_selection.StratifiedGroupKFold(folds, shuffle=True, random_state=seed), groups
        )
    majority = int(np.bincount(y_lab).argmax())
    forest.fit(x_lab, y_lab)
    probability = imputation_forest.death_probability(forest, x)
    imputed = imputation_forest.imputed_labels(probability)
    label = np.where(labelled, observed, imputed)
    table = [
        {"source_id": row["source_id"], "patientid": row["patientid"], "mortality_observed": int(obs),
         "mortality": int(lab), "label_source": "observed" if known else "imputed",
         "imputed_probability": round(float(p), 6)}
        for row, obs, lab, known, p in zip(rows, observed, label, labelled, probability)
    ]
    report = {
        "features": list(imputation_forest.FEATURE_NAMES),
        "feature_encoding": "Y=1, N=0, anything else=-1 (not recorded); age bins 0-30..81-100 as 0..6, unknown=-1",
        "feature_importances": dict(zip(imputation_forest.FEATURE_NAMES,
                                        [round(float(v), 4) for v in forest.feature_importances_])),
        "labelled": int(labelled.sum()), "imputed": int((~labelled).sum()),
        "labelled_died": int(y_lab.sum()), "imputed_died": int(imputed[~labelled].sum()),
        "cv_folds": folds, "seed": seed, "n_estimators": n_estimators,
        "cv_by_image": by_image,
        "cv_by_patient": by_patient,
        "majority_class_baseline": {"class": majority, "accuracy": float(np.mean(y_lab == majority)),
                                    "balanced_accuracy": 0.5},
        "study_reported_accuracy": 0.925,
    }
    return {"labels": table, "report": report}


def missing_feature_columns(examples: base.Artifact) -> list[str]:
    """The study's flags that ingest's table lacks (a manifest without them)."""
    with open(examples.path / ingest.EXAMPLES_NAME, newline="") as handle:
        header = next(csv.reader(handle))
    return [column for column in ingest.CLINICAL_COLUMNS if column not in header]


def without_imputation(rows: Sequence[Mapping[str, str]], missing: Sequence[str]) -> dict[str, Any]:
    """Observed labels only; the report says why nothing was imputed."""
    observed = [int(row["mortality_observed"]) for row in rows]
    table = [{"source_id": row["source_id"], "patientid": row["patientid"], "mortality_observed": label,
              "mortality": label, "label_source": "observed" if label != NO_LABEL else "none",
              "imputed_probability": "nan"} for row, label in zip(rows, observed)]
    report = {"imputation": f"not possible: the data has no column(s) {', '.join(missing)}",
              "missing_columns": list(missing), "labelled": sum(label != NO_LABEL for label in observed),
              "imputed": 0, "imputed_died": 0, "unlabelled": observed.count(NO_LABEL)}
    return {"labels": table, "report": report}


def read_refusal(artifact: base.Artifact) -> dict[str, list[str]]:
    """{'imputation_missing_columns': [...]} when imputation was not possible, else {}."""
    missing = artifact.counts.get("imputation_missing_columns")
    return {"imputation_missing_columns": missing} if missing else {}


def read_labels(artifact: base.Artifact) -> dict[str, dict[str, str]]:
    with open(artifact.path / LABELS_NAME, newline="") as handle:
        return {row["source_id"]: row for row in csv.DictReader(handle)}


def run(inputs: Mapping[str, base.Artifact], params: Mapping[str, Any], out_dir: Path) -> Mapping[str, Any]:
    rows = ingest.read_examples(inputs["examples"])
    missing = missing_feature_columns(inputs["examples"])
    if missing:
        result = without_imputation(rows, missing)
    else:
        result = impute(rows, params["seed"], params["n_estimators"], params["cv_folds"])
    _write_labels(out_dir / LABELS_NAME, result["labels"])
    files.write_json_atomic(out_dir / REPORT_NAME, result["report"])
    report = result["report"]
    if missing:
        return {"labelled": report["labelled"], "imputed": 0, "imputed_died": 0, "imputation_missing_columns": missing}
    return {
        "labelled": report["labelled"], "imputed": report["imputed"], "imputed_died": report["imputed_died"],
        "cv_accuracy": round(report["cv_by_image"]["accuracy"], 4),
        "cv_balanced_accuracy": round(report["cv_by_image"]["balanced_accuracy"], 4),
        "majority_baseline": round(report["majority_class_baseline"]["accuracy"], 4),
    }


def _write_labels(path: Path, labels: Sequence[Mapping[str, Any]]) -> None:
    with files.atomic_open(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(labels)


def _summary(artifact: base.Artifact) -> str:
    c = artifact.counts
    if c.get("imputation_missing_columns"):
        return (f"{c['labelled']} observed labels; imputation not possible: no column(s) "
                f"{', '.join(c['imputation_missing_columns'])} (the imputed variants refuse)")
    return (f"{c['labelled']} observed + {c['imputed']} imputed labels ({c['imputed_died']} imputed deaths); "
            f"forest {artifact.record['parameters']['cv_folds']}-fold CV accuracy {c['cv_accuracy']:.3f}, balanced {c['cv_balanced_accuracy']:.3f}, "
            f"majority baseline {c['majority_baseline']:.3f}")


SPEC = base.ComponentSpec(name="impute", run=run, summary=_summary)
