"""The study's classifier: normalisation + any backbone + pooling + fastai's head, one logit out.

Input: float32 RGB in [0, 255], shape (H, W, 3). Output: one float32 logit, the
log-odds of death (train with binary cross-entropy from logits). fastai's
learner for this study outputs two softmax scores; for two classes
softmax([a, b])[1] == sigmoid(b - a), so one logit is the same model family with
one redundant output removed, and thresholds/ROC metrics apply to it directly.

Head = fastai's `create_head` for a new task (what `vision_learner` puts on a cut
ImageNet body), with the study's single output:
    pool -> BatchNorm -> Dropout(0.25) -> Dense(512, no bias) -> ReLU
         -> BatchNorm -> Dropout(0.5) -> Dense(1, no bias)
fastai pools with AdaptiveConcatPool2d (max and average concatenated,
pooling='concat'); the project default is a plain global average
(pooling='avg'), the usual choice for small data sets. Head batch norms use
torch's defaults (epsilon 1e-5, momentum 0.1 -> Keras 0.9).
"""

import keras
from keras import layers

from models.preprocessor import ImageNetNormalization

POOLINGS = ("avg", "concat")
HEAD_WIDTH = 512
HEAD_DROPOUTS = (0.25, 0.5)


def _head_batch_norm(name):
    return layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name)


def _pool(features, pooling):
    """Global pooling of a (B, H, W, C) feature map or (B, tokens, C) sequence."""
    if len(features.shape) == 3:
        average, maximum = layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D
    else:
        average, maximum = layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D
    pooled = average(name="head_avg_pool")(features)
    if pooling == "concat":
        # fastai's AdaptiveConcatPool2d order: max first, then average.
        pooled = layers.Concatenate(name="head_concat_pool")(
            [maximum(name="head_max_pool")(features), pooled])
    return pooled


def build_image_classifier(backbone, image_size=224, pooling="avg", name="classifier"):
    """Wrap `backbone` (a Keras model named 'backbone' by this function) into the study's classifier."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    backbone.name = "backbone"
    images = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="images")
    x = ImageNetNormalization(name="preprocessor")(images)
    x = _pool(backbone(x), pooling)
    x = _head_batch_norm("head_bn1")(x)
    x = layers.Dropout(HEAD_DROPOUTS[0], name="head_dropout1")(x)
    x = layers.Dense(HEAD_WIDTH, use_bias=False, name="head_dense")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = _head_batch_norm("head_bn2")(x)
    x = layers.Dropout(HEAD_DROPOUTS[1], name="head_dropout2")(x)
    # float32 even under mixed precision: the loss and metrics read the logit directly.
    logit = layers.Dense(1, use_bias=False, dtype="float32", name="logit")(x)
    return keras.Model(images, logit, name=name)


def get_backbone(model):
    return model.get_layer("backbone")


def set_body_trainable(model, trainable, always_trainable=()):
    """Freeze (False) or unfreeze (True) the backbone of a classifier; the head always trains.

    Frozen batch norms run in inference mode (Keras 3: a non-trainable
    BatchNormalization uses its moving statistics even when training=True).
    `always_trainable` names backbone layers that train in every phase: pass
    `report.fresh_layers` of a partial weight load, since those were never
    pretrained. Recompile the model after calling this.
    """
    backbone = get_backbone(model)
    unknown = set(always_trainable) - {layer.name for layer in backbone.layers}
    if unknown:
        raise ValueError(f"always_trainable names layers not in the backbone: {sorted(unknown)}")
    backbone.trainable = True  # the container must stay trainable for any sublayer to train
    for layer in backbone.layers:
        layer.trainable = trainable or layer.name in always_trainable
