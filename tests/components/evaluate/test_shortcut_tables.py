"""The audit's tables say what was not scored, and what has not run, in words."""

import csv

from components.evaluate import shortcut_tables, shortcuts


def _record(site_rows=()):
    scored = {"estimate": 0.7, "low": 0.5, "high": 0.9, "valid_resamples": 1000}
    counts = {"images": 12, "image_deaths": 0, "patients": 6, "patient_deaths": 0}
    return {"population": {"images": 157, "image_deaths": 32, "patients": 78, "patient_deaths": 15},
            "fold_params": {"repeats": 5, "folds": 5, "seed": 0}, "resamples": 1000, "bootstrap_seed": 0,
            "feature_count": 448, "weights_description": "weights: ImageNet, partial\n  source: x.npz",
            "probe_rebalance": "class_weights",
            "provenance_probes": [{"target": "view: AP against the rest",
                                   "classes": {"AP": {"images": 1, "patients": 1}},
                                   "c_chosen": [0.01, float("nan")], **scored}],
            "no_pixel_baselines": [{"baseline": "age + sex", "best": True, **scored}],
            "best_no_pixel_baseline": "age + sex",
            "paired_gain": [{"model": "probe", "baseline": "age + sex", "roc_auc_first": 0.64, "roc_auc_second": 0.74,
                             "difference": 0.1, "low": -0.1, "high": 0.3, "valid_resamples": 1000}],
            "within_stratum": [{"kind": "site", "stratum": "Taiwan", "model": "probe", **counts,
                                "status": shortcuts.ONE_OUTCOME},
                               {"kind": "site", "stratum": "China", "model": "probe", **counts,
                                "status": shortcuts.SCORED, **scored}],
            "leave_one_site_out": list(site_rows), "site_split_given": bool(site_rows)}


def test_one_outcome_strata_and_the_missing_site_split_are_named(tmp_path):
    stem = shortcut_tables.write(tmp_path, _record())
    text = stem.with_suffix(".md").read_text()
    assert "| site: Taiwan | 12 (0) | 6 (0) | one outcome |" in text
    assert "| site: China | 12 (0) | 6 (0) | 0.700 (0.500 to 0.900) |" in text
    assert "Not run yet" in text and "source: x.npz" not in text
    rows = list(csv.DictReader(open(stem.with_suffix(".csv"))))
    assert {row["section"] for row in rows} == {"provenance probe", "no-pixel baseline", "paired gain",
                                                "within stratum"}
    assert [row["status"] for row in rows if row["stratum"] == "Taiwan"] == [shortcuts.ONE_OUTCOME]
