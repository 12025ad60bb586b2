import numpy as np
import pytest

from common.errors import PipelineError
from components import impute


def _rows(n_labelled=60, n_unlabelled=20, seed=0):
    """Deaths go with ICU + intubation + old age, so a forest can learn them."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_labelled + n_unlabelled):
        died = int(rng.random() < 0.3)
        flag = lambda p: "Y" if rng.random() < p else "N"  # noqa: E731
        rows.append({
            "source_id": f"img{i}.png", "patientid": str(i // 2),
            "went_icu": flag(0.9 if died else 0.1), "needed_supplemental_O2": flag(0.5),
            "intubation_present": flag(0.8 if died else 0.1), "extubated": "",
            "age": str(int(rng.integers(70, 90) if died else rng.integers(20, 60))),
            "mortality_observed": str(died if i < n_labelled else -1),
        })
    return rows


def test_report_puts_accuracy_beside_balanced_accuracy_and_baseline():
    result = impute.impute(_rows(), seed=0, n_estimators=50, folds=5)
    report = result["report"]
    assert report["labelled"] == 60 and report["imputed"] == 20
    for key in ("cv_by_image", "cv_by_patient"):
        assert 0.8 < report[key]["accuracy"] <= 1.0
        assert 0.8 < report[key]["balanced_accuracy"] <= 1.0
    baseline = report["majority_class_baseline"]
    assert baseline["class"] == 0 and 0.5 < baseline["accuracy"] < 0.9
    assert report["cv_by_image"]["accuracy"] > baseline["accuracy"]


def test_labels_keep_their_source():
    rows = _rows()
    labels = impute.impute(rows, seed=0, n_estimators=50, folds=5)["labels"]
    for row, label in zip(rows, labels):
        observed = int(row["mortality_observed"])
        if observed >= 0:
            assert (label["label_source"], label["mortality"], label["mortality_observed"]) == ("observed", observed, observed)
        else:
            assert label["label_source"] == "imputed" and label["mortality_observed"] == -1
            assert label["mortality"] == int(label["imputed_probability"] >= 0.5)
    old_icu = [l for r, l in zip(rows, labels) if l["label_source"] == "imputed" and r["went_icu"] == "Y"
               and r["intubation_present"] == "Y" and int(r["age"]) >= 70]
    assert all(l["mortality"] == 1 for l in old_icu)


def test_same_seed_same_labels():
    first = impute.impute(_rows(), seed=3, n_estimators=30, folds=5)
    second = impute.impute(_rows(), seed=3, n_estimators=30, folds=5)
    assert first == second


def test_too_few_labels_of_a_class_is_a_clear_error():
    rows = _rows(n_labelled=12)
    for row in rows:
        if row["mortality_observed"] == "1":
            row["mortality_observed"] = "0"
    rows[0]["mortality_observed"] = "1"
    with pytest.raises(PipelineError, match="at least 5 labelled images of each class"):
        impute.impute(rows, seed=0, n_estimators=10, folds=5)
