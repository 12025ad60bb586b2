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
any fold model (`probe_fold` runs a fold); the same network, head initialised from the fold's probe, is
what `--method=lp_ft` fine-tunes, with batch norm kept in inference mode as the probe's features had it
(`fold.Session.set_phase`: in training mode each batch's statistics move the standardised features by
hundreds of standard deviations, and the first LP-FT runs started from a training loss of 57).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import layers
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

import models
from components.train import input_pipeline

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

    def record(self) -> dict:
        """C, the rule that chose it and the inner scores, for the fold's record."""
        rule = SEARCH_RULE if self.inner_auc else f"fallback C = {FALLBACK_C:g}: a class has < 2 patients"
        return {"c": self.c, "c_rule": rule, "inner_auc": {f"{c:.3g}": v for c, v in self.inner_auc.items()}}


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


def features(model: keras.Model, images, batch_size: int) -> np.ndarray:
    """`model`'s outputs (float64) for `images`, an array or input_pipeline.StreamedImages."""
    return np.concatenate([np.asarray(model(batch, training=False), np.float64) for batch in
                           input_pipeline.image_batches(images, input_pipeline.batch_sizes(len(images), batch_size))])


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


def probe_classifier(classifier: keras.Model, probe: Probe | None = None) -> keras.Model:
    """The probe as a Keras classifier: images in [0, 255] -> one float32 logit (log-odds of death). The
    standardisation is folded into the one Dense layer (w / scale, b - w . mean / scale), so the same model
    is also LP-FT's network; without `probe` the head starts at zero (`set_head` fills it per fold)."""
    images, pooled = _pooled(classifier)
    model = keras.Model(images, layers.Dense(1, dtype="float32", kernel_initializer="zeros", name="logit")(pooled),
                        name="linear_probe")
    if probe is not None:
        set_head(model, probe)
    return model


def set_head(model: keras.Model, probe: Probe) -> None:
    """Put `probe` (standardisation folded in) into the model's `logit` layer."""
    kernel = probe.coef / probe.scale
    bias = probe.intercept - float(np.dot(kernel, probe.mean))
    model.get_layer("logit").set_weights([kernel[:, None].astype(np.float32), np.array([bias], np.float32)])
