"""Paired comparisons between runs (components/evaluate/comparisons.py): the imputation's effect."""

import pytest

from common.errors import PipelineError
from components.evaluate import comparisons, study_tables


def _train_dir(path, rows):
    """A train artifact's out-of-fold predictions: (fold, source_id, patient, label, label_source, probability)."""
    for fold in {row[0] for row in rows}:
        (path / f"fold_{fold}").mkdir(parents=True)
        lines = ["source_id,patient,label,label_source,probability"]
        lines += [",".join(map(str, row[1:])) for row in rows if row[0] == fold]
        (path / f"fold_{fold}" / "predictions.csv").write_text("\n".join(lines) + "\n")
    return str(path)


# Observed images a-d: the original variant ranks them at ROC AUC 1/4, the imputed one at 1.
ORIGINAL = [(0, "a.png", "p1", 1, "observed", 0.6), (0, "b.png", "p2", 0, "observed", 0.7),
            (1, "c.png", "p3", 1, "observed", 0.3), (1, "d.png", "p4", 0, "observed", 0.4)]
IMPUTED = [(0, "a.png", "p1", 1, "observed", 0.9), (1, "b.png", "p2", 0, "observed", 0.2),
           (1, "c.png", "p3", 1, "observed", 0.8), (0, "d.png", "p4", 0, "observed", 0.1),
           (0, "e.png", "p5", 0, "imputed", 0.95)]


def _paired_runs(tmp_path, imputed_rows=IMPUTED):
    return [{"variant": "original_weights", "arch": "resnet18", "split": "patient",
             "artifacts": {"train": _train_dir(tmp_path / "original", ORIGINAL)}},
            {"variant": "imputed_weights", "arch": "resnet18", "split": "patient",
             "artifacts": {"train": _train_dir(tmp_path / "imputed", imputed_rows)}},
            {"variant": "imputed", "arch": "resnet18", "split": "patient", "artifacts": {}}]  # no original: skipped


def test_the_imputation_effect_compares_both_variants_on_the_same_observed_images(tmp_path):
    assert comparisons.imputation_pairs() == [("original", "imputed"), ("original_weights", "imputed_weights"),
                                        ("original_resample", "imputed_resample")]
    [row] = comparisons.imputation_effect(_paired_runs(tmp_path), resamples=200, seed=0)
    assert (row["original"], row["imputed"], row["images"], row["deaths"]) == ("original_weights", "imputed_weights",
                                                                              4, 2)  # the imputed image e is out
    assert row["roc_auc_first"] == 0.25 and row["roc_auc_second"] == 1.0 and row["difference"] == 0.75
    assert 0 <= row["low"] <= 0.75 <= row["high"] <= 1 and row["unit_count"] == 4
    assert 0 < row["valid_resamples"] < 200  # resamples of one class only are left out
    assert "| original_weights | imputed_weights | resnet18 | patient | 4 (2) | 0.250 | 1.000 | +0.750 (" in \
        study_tables.imputation_markdown([row])


def test_variants_that_scored_different_images_are_refused_by_name(tmp_path):
    with pytest.raises(PipelineError, match=r"original_weights and imputed_weights \(resnet18\) scored different "
                                            r"observed images, e\.g\. 'd\.png'"):
        comparisons.imputation_effect(_paired_runs(tmp_path, IMPUTED[:3]), resamples=10, seed=0)
