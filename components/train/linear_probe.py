"""Linear probe: L2 logistic regression on frozen pretrained features, its C chosen inside the training fold.

Why: the shared ImageNet weights have stage 4 random, so fine-tuning trains 8.4M of ResNet-18's 11.7M
parameters from scratch on ~125 images a fold. A probe trains 449 numbers on features that are all
pretrained: the global-average-pooled outputs of stages 1-3 (64 + 128 + 256 channels), standardised.

Protocol (decided before any run): C from a log grid (`C_GRID`) maximising the mean ROC AUC of an inner
stratified patient-grouped K-fold (3, fewer when a class has fewer patients) over the *training* fold
only, ties to the smallest C (the strongest regularisation); `FALLBACK_C` when a class has fewer than 2
patients, as on the embedded sample's folds (the fold record says which rule chose C). The outer
validation fold is never seen until the chosen model predicts it. Class weights as the variant says:
`class_weights` and `resample` both become scikit-learn's 'balanced' (N / (2 n_c), the study's formula;
resampling to 50/50 weighs the classes equally in expectation), `none` none.

The fitted probe is saved as a Keras classifier (same input, one logit out) so evaluation, test-time
augmentation, Grad-CAM (on the stage-3 map, the first output of its `backbone`) and export treat it as
any fold model.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

import models
from common import files
from components.train import fold as fold_lib, input_pipeline, metrics, outputs

# Outputs of ResNet-18's (torchvision names) stages 1-3, deepest first: Grad-CAM reads the first.
TAPS = ("layer3_1_relu2", "layer2_1_relu2", "layer1_1_relu2")
C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 13))
INNER_FOLDS = 3
SEARCH_RULE = "C maximising mean inner ROC AUC (ties: smallest C)"
FALLBACK_C = 1.0  # scikit-learn's default, when no inner split holds both classes (fewer than 2 patients of one)


@dataclasses.dataclass(frozen=True)
class Probe:
    """A fitted probe: the standardisation and the logistic regression, in feature order (stage 1 first)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    c: float
    inner_auc: dict[float, float]


def _pooled(classifier: keras.Model):
    """(images input, backbone taps model, pooled features tensor): stage 1..3 maps averaged and joined."""
    body = models.classifier.get_backbone(classifier)
    missing = [name for name in TAPS if name not in {layer.name for layer in body.layers}]
    if missing:
        raise ValueError(f"linear probe: the backbone has no layers {missing} (it needs torchvision's ResNet names)")
    taps = keras.Model(body.input, [body.get_layer(name).output for name in TAPS], name="backbone")
    images = keras.Input(shape=classifier.input_shape[1:], dtype="float32", name="images")
    maps = taps(classifier.get_layer("preprocessor")(images))
    pooled = [layers.GlobalAveragePooling2D(name=f"probe_pool_{name}")(m) for name, m in zip(TAPS, maps)]
    return images, layers.Concatenate(name="probe_features")(pooled[::-1])


def feature_model(classifier: keras.Model) -> keras.Model:
    """images in [0, 255] -> the probe's features (64 + 128 + 256 for ResNet-18), float32."""
    images, features = _pooled(classifier)
    return keras.Model(images, layers.Activation("linear", dtype="float32")(features))


def features(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.asarray(model(images[i:i + batch_size], training=False), np.float64)
                           for i in range(0, len(images), batch_size)])


def class_weight(rebalance: str) -> str | None:
    return None if rebalance == "none" else "balanced"


def _fit(x, y, c, weight):
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, class_weight=weight, max_iter=5000).fit(scaler.transform(x), y)
    return scaler, model


def choose_c(x: np.ndarray, y: np.ndarray, patients: np.ndarray, weight: str | None,
             seed: int) -> tuple[float, dict[float, float]]:
    """(C, {C: mean inner ROC AUC}) from an inner patient-grouped CV over these (training) rows only;
    (FALLBACK_C, {}) when no inner fold can hold both classes."""
    minority_patients = min(len(np.unique(patients[y == label])) for label in (0, 1))
    if minority_patients < 2:  # no inner split can hold both classes on both sides
        return FALLBACK_C, {}
    splitter = StratifiedGroupKFold(n_splits=min(INNER_FOLDS, minority_patients), shuffle=True, random_state=seed)
    scores: dict[float, list[float]] = {c: [] for c in C_GRID}
    for inner_train, inner_val in splitter.split(x, y, groups=patients):
        if len(np.unique(y[inner_val])) < 2 or len(np.unique(y[inner_train])) < 2:
            continue  # no AUC without both classes
        for c in C_GRID:
            scaler, model = _fit(x[inner_train], y[inner_train], c, weight)
            scores[c].append(roc_auc_score(y[inner_val], model.decision_function(scaler.transform(x[inner_val]))))
    if not any(scores.values()):
        return FALLBACK_C, {}
    mean = {c: float(np.mean(s)) for c, s in scores.items()}
    best = max(mean.values())
    return min(c for c in C_GRID if mean[c] >= best - 1e-12), mean


def fit(x: np.ndarray, y: np.ndarray, patients: np.ndarray, rebalance: str, seed: int) -> Probe:
    """C by `choose_c` on these rows, then the probe refitted on all of them."""
    weight = class_weight(rebalance)
    c, inner = choose_c(x, y, patients, weight, seed)
    scaler, model = _fit(x, y, c, weight)
    return Probe(mean=scaler.mean_, scale=scaler.scale_, coef=model.coef_[0], intercept=float(model.intercept_[0]),
                 c=c, inner_auc=inner)


def probe_classifier(classifier: keras.Model, probe: Probe) -> keras.Model:
    """The probe as a Keras classifier: images in [0, 255] -> one float32 logit (log-odds of death)."""
    images, pooled = _pooled(classifier)
    standardised = layers.Normalization(mean=probe.mean, variance=probe.scale ** 2, name="probe_standardise",
                                        dtype="float32")(pooled)
    logit_layer = layers.Dense(1, dtype="float32", name="logit")
    logit = logit_layer(standardised)
    logit_layer.set_weights([probe.coef[:, None].astype(np.float32), np.array([probe.intercept], np.float32)])
    return keras.Model(images, logit, name="linear_probe")


def run_fold(classifier: keras.Model, extractor: keras.Model, fold: int, train: input_pipeline.Examples,
             val: input_pipeline.Examples, p, work_dir: Path, weights: str) -> dict[str, Any]:
    """One fold's probe (or the finished one from `work_dir`): fit on `train`, predict `val`, write the
    fold's outputs as a fine-tuned fold does; returns its record."""
    done = work_dir / fold_lib.DONE
    if done.is_file():
        return json.loads(done.read_text())
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    x_train = features(extractor, train.images, p.eval_batch_size)
    probe = fit(x_train, train.labels, train.patients, p.rebalance, p.seed + fold)
    model = probe_classifier(classifier, probe)
    logits = features(model, val.images, p.eval_batch_size)[:, 0]
    seconds = time.perf_counter() - start
    result = {"fold": fold, "method": "linear_probe", "num_train": len(train), "num_val": len(val),
              "c": probe.c, "c_rule": SEARCH_RULE if probe.inner_auc else f"fallback C = {FALLBACK_C:g}: too few patients", "inner_auc": {f"{c:.3g}": s for c, s in probe.inner_auc.items()},
              "final": fold_lib.validation_metrics(val, logits, p.labels),
              "fed_counts": np.bincount(train.labels, minlength=2).tolist(), "timings": {"linear_probe": seconds},
              "train_images": 0, "weights": weights}
    outputs.write_fold(work_dir / outputs.RESULT_DIR, fold, model, [], {},
                       outputs.prediction_rows(val, metrics.sigmoid(logits)), result)
    files.write_json_atomic(done, result)
    return result
