"""Per-epoch metrics from logits: loss, ROC AUC, balanced accuracy (threshold 0.5)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from common.decision import called_died


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def binary_metrics(labels, logits, prefix: str) -> dict[str, float]:
    """{prefix_loss, prefix_auc, prefix_bacc}; AUC is NaN when only one class is present."""
    labels = np.asarray(labels).astype(int)
    logits = np.asarray(logits, np.float64)
    if len(labels) == 0:
        return {}
    loss = float(np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))))
    both = len(np.unique(labels)) == 2
    auc = float(roc_auc_score(labels, logits)) if both else math.nan
    bacc = float(balanced_accuracy_score(labels, called_died(sigmoid(logits), 0.5).astype(int))) if both else math.nan
    return {f"{prefix}_loss": loss, f"{prefix}_auc": auc, f"{prefix}_bacc": bacc}
