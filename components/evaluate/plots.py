"""The study's figures: loss curves per fold, mean ROC and PR curves over folds, confusion matrix and
Grad-CAM overlays, plus a reliability diagram and decision curves (the LR-finder figure is
`components.train.outputs.plot_lr_curves`, drawn from the train artifact's curves). Each function
writes one PNG and returns its path."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from common import files  # noqa: E402

GRID = np.linspace(0, 1, 101)


def _save(figure, path: Path) -> Path:
    """Written beside `path` and renamed into place: a killed run leaves no truncated figure a report embeds."""
    figure.tight_layout()
    path = Path(path)
    with files.atomic_open(path, "wb") as handle:
        figure.savefig(handle, dpi=110, format="png")
    plt.close(figure)
    return path


def loss_curves(histories: Mapping[int, Sequence[Mapping[str, float]]], path: Path) -> Path:
    """Train and validation loss per epoch for each fold (the study's Figures 8-9)."""
    folds = sorted(histories)
    columns = min(len(folds), 5)
    rows = math.ceil(len(folds) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False, sharey=True)
    for axis, fold in zip(axes.flat, folds):
        epochs = [h["global_epoch"] + 1 for h in histories[fold]]
        axis.plot(epochs, [h["train_loss"] for h in histories[fold]], label="train")
        axis.plot(epochs, [h["val_loss"] for h in histories[fold]], label="validation")
        frozen = [h["global_epoch"] + 1 for h in histories[fold] if h.get("phase") == "frozen"]
        if frozen:
            axis.axvspan(min(frozen) - 0.5, max(frozen) + 0.5, color="0.9", label="body frozen")
        axis.set_title(f"fold {fold}")
        axis.set_xlabel("epoch")
    axes.flat[0].set_ylabel("cross-entropy")
    axes.flat[0].legend(fontsize=8)
    for axis in list(axes.flat)[len(folds):]:
        axis.axis("off")
    return _save(figure, path)


def _per_fold(folds, labels, probabilities):
    for fold in sorted(np.unique(folds)):
        mask = folds == fold
        if len(np.unique(labels[mask])) == 2:
            yield fold, labels[mask], probabilities[mask]


def roc_curves(folds: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    """Per-fold ROC curves faint, their mean (TPR averaged on a common FPR grid) bold."""
    figure, axis = plt.subplots(figsize=(4.6, 4.4))
    curves, aucs = [], []
    for fold, y, p in _per_fold(folds, labels, probabilities):
        fpr, tpr, _ = skm.roc_curve(y, p)
        axis.plot(fpr, tpr, color="tab:blue", alpha=0.25, lw=1)
        curves.append(np.interp(GRID, fpr, tpr))
        aucs.append(skm.roc_auc_score(y, p))
    if curves:
        mean = np.mean(curves, axis=0)
        mean[0] = 0.0
        axis.plot(GRID, mean, color="tab:blue", lw=2.5,
                  label=f"mean of {len(curves)} folds (AUC {np.mean(aucs):.2f} ± {np.std(aucs):.2f})")
    axis.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    axis.set(xlabel="false positive rate", ylabel="true positive rate (died)", title="ROC, validation folds")
    axis.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def pr_curves(folds: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    """Per-fold precision-recall curves faint, their mean (precision on a recall grid) bold."""
    figure, axis = plt.subplots(figsize=(4.6, 4.4))
    curves, aps = [], []
    for fold, y, p in _per_fold(folds, labels, probabilities):
        precision, recall, _ = skm.precision_recall_curve(y, p)
        axis.plot(recall, precision, color="tab:red", alpha=0.25, lw=1)
        curves.append(np.interp(GRID, recall[::-1], precision[::-1]))
        aps.append(skm.average_precision_score(y, p))
    if curves:
        axis.plot(GRID, np.mean(curves, axis=0), color="tab:red", lw=2.5,
                  label=f"mean of {len(curves)} folds (AP {np.mean(aps):.2f} ± {np.std(aps):.2f})")
    prevalence = float(np.mean(labels)) if len(labels) else 0.0
    axis.axhline(prevalence, ls="--", color="0.6", lw=1, label=f"prevalence {prevalence:.2f}")
    axis.set(xlabel="recall (died)", ylabel="precision", title="Precision-recall, validation folds", ylim=(0, 1.02))
    axis.legend(loc="upper right", fontsize=8)
    return _save(figure, path)


def confusion_matrix(counts: Mapping[str, int], path: Path) -> Path:
    """The confusion matrix of the pooled out-of-fold predictions (the folds' matrices summed), positive = died."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    figure, axis = plt.subplots(figsize=(3.6, 3.2))
    axis.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center",
                  color="white" if value > matrix.max() / 2 else "black", fontsize=13)
    axis.set_xticks([0, 1], ["survived", "died"])
    axis.set_yticks([0, 1], ["survived", "died"])
    axis.set(xlabel="predicted", ylabel="actual", title="Pooled out-of-fold")
    return _save(figure, path)


def reliability_diagram(calibration: Mapping, path: Path) -> Path:
    """Observed died fraction against mean predicted probability in each non-empty bin (`calibration`
    as `evaluate_metrics.calibration` returns it), bin counts written beside the points."""
    filled = [b for b in calibration["bins"] if b["count"]]
    predicted = [b["mean_predicted"] for b in filled]
    observed = [b["observed_fraction"] for b in filled]
    figure, axis = plt.subplots(figsize=(4.6, 4.4))
    axis.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfectly calibrated")
    axis.plot(predicted, observed, marker="o", color="tab:purple",
              label=f"{len(calibration['bins'])} equal-width bins (ECE {calibration['ece']:.3f}, "
                    f"slope {calibration['slope']:.2f}, intercept {calibration['intercept']:.2f})")
    for bin_, x, y in zip(filled, predicted, observed):
        axis.annotate(f"n={bin_['count']}", (x, y), textcoords="offset points", xytext=(0, -12 if y > 0.5 else 6),
                      ha="center", fontsize=7)
    axis.axhline(calibration["base_rate"], ls=":", color="tab:red", lw=1,
                 label=f"base rate {calibration['base_rate']:.2f}")
    axis.set(xlabel="mean predicted probability of death", ylabel="observed fraction died",
             title="Calibration, observed labels", xlim=(0, 1), ylim=(-0.02, 1.02))
    axis.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def flexible_calibration(curve: Mapping, probabilities: Sequence[float], path: Path, title: str) -> Path:
    """The flexible calibration curve (`validation.calibration_curve`) with its bootstrap band, over a histogram of
    the predicted risks it was fitted on."""
    figure, (axis, histogram) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True,
                                             gridspec_kw={"height_ratios": [3, 1]})
    axis.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="ideal")
    axis.fill_between(curve["predicted"], curve["low"], curve["high"], color="tab:purple", alpha=0.2,
                      label="95% bootstrap band")
    axis.plot(curve["predicted"], curve["observed"], color="tab:purple", lw=2, label="flexible calibration curve")
    axis.set(ylabel="observed risk of death", title=title, xlim=(0, 1), ylim=(-0.02, 1.02))
    axis.legend(loc="upper left", fontsize=8)
    histogram.hist(probabilities, bins=np.linspace(0, 1, 41), color="0.5")
    histogram.set(xlabel="predicted risk of death", ylabel="images")
    return _save(figure, path)


def decision_curves(curves: Mapping[str, Mapping], path: Path) -> Path:
    """Net benefit against threshold probability of each model in `curves` (legend label -> curve as
    `evaluate_decision.decision_curve` returns it), beside treat-all and treat-none."""
    figure, axis = plt.subplots(figsize=(5.6, 4.4))
    first_curve = next(iter(curves.values()))  # every curve is on the same rows, so one prevalence and treat-all
    first = first_curve["rows"]
    thresholds = [row["threshold"] for row in first]
    axis.plot(thresholds, [row["treat_all"] for row in first], color="0.5", lw=1, label="treat all")
    axis.axhline(0.0, color="0.2", lw=1, ls=":", label="treat none")
    for (label, curve), color in zip(curves.items(), ("tab:blue", "tab:green", "tab:orange")):
        axis.plot(thresholds, [row["model"] for row in curve["rows"]], color=color, lw=2, label=label)
    prevalence = first_curve["prevalence"]
    axis.set(xlabel="threshold probability of death", ylabel="net benefit", title="Decision curves, observed labels",
             ylim=(min(-0.05, -prevalence / 4), prevalence + 0.05))
    axis.legend(loc="upper right", fontsize=8)
    return _save(figure, path)


def gradcam_grid(images: Sequence[np.ndarray], heatmaps: Sequence[np.ndarray], titles: Sequence[str],
                 path: Path) -> Path:
    """X-rays with their Grad-CAM heat maps overlaid."""
    columns = max(1, min(len(images), 4))
    rows = max(1, math.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.5 * rows), squeeze=False)
    for axis, image, heatmap, title in zip(axes.flat, images, heatmaps, titles):
        axis.imshow(image.astype(np.uint8))
        axis.imshow(heatmap, cmap="jet", alpha=0.35, extent=(0, image.shape[1], image.shape[0], 0))
        axis.set_title(title, fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    return _save(figure, path)
