"""Made-up study runs (evaluation records) for the study-table and study-runner tests."""

from components.evaluate import study_tables


def run_record(variant, arch="resnet18", auc=0.7):
    metrics = {name: {"estimate": auc, "ci_low": auc - 0.1, "ci_high": auc + 0.1, "fold_mean": auc + 0.02,
                      "fold_std": 0.05} for name in study_tables.COLUMNS}
    return {"variant": variant, "arch": arch, "split": "patient", "evaluation": {"metrics": metrics}}


def evaluation_set(auc, low, high):
    return {"pooled": {"roc_auc": auc}, "fold_mean": {"roc_auc": {"mean": auc + 0.05}},
            "bootstrap": {"intervals": {"roc_auc": {"low": low, "high": high}}}}


def repeated_summary(auc, low, high, sd=0.02):
    metrics = {name: {"mean": auc, "ci_low": low, "ci_high": high, "sd": sd, "min": auc - sd, "max": auc + sd}
               for name in study_tables.REPEATED_COLUMNS}
    return {"metrics": metrics, "per_repeat": [{"roc_auc": auc - sd}, {"roc_auc": auc + sd}]}


def repeated_run(arch, auc, low, high, age_sex_auc=0.67, split_seeds=(0, 7)):
    repeated = {**repeated_summary(auc, low, high), "repeats": 2, "split_seeds": list(split_seeds),
                "image_minus_age_sex": {"difference": auc - age_sex_auc, "low": -0.1, "high": 0.3},
                "baselines": {"age_sex": repeated_summary(age_sex_auc, 0.5, 0.8),
                              "image_age_sex": repeated_summary(auc + 0.01, low, high)}}
    return {**run_record("original_weights", arch=arch), "evaluation": {"repeated_cv": repeated},
            "train_seconds": 900.0, "command": f"python -m pipeline.study --arch={arch}"}
