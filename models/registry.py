"""Build any of the study's classifiers (Table 1's ResNet-18, Table 2's comparison models) by name.

Every architecture gets the same contract (float32 RGB [0, 255] in, ImageNet
normalisation inside, one float32 logit out) and the same head
(`models/classifier.py`). Bodies come from this package (ResNet-18, AlexNet),
Keras core (`keras.applications`, always built with weights=None and without
their own preprocessing; ConvNeXt with depthwise layers, `models/convnext.py`)
or keras-hub (Swin-T). Nothing is ever downloaded.

Weights, always a user-supplied file:
- `.pth` / `.safetensors` / `.npz` torchvision checkpoints: resnet18, resnet18_stage3 (its stage 4
  left out of the file's tensors), alexnet
  (`models/torchvision_weights.py`, modes auto/strict/partial);
- `.weights.h5`: any architecture, a file written by `backbone.save_weights` of
  the same Keras body (for example after pretraining elsewhere), loaded strictly
  by Keras.
"""

import pathlib

import keras

from models.alexnet_backbone import AlexNetBackbone
from models.classifier import build_image_classifier
from models.convnext import convnext_tiny
from models.resnet18_backbone import ResNet18Backbone
from models.torchvision_weights import WeightLoadReport, file_sha256, load_torchvision_weights

TORCHVISION_SUFFIXES = (".pth", ".pt", ".safetensors", ".npz")
KERAS_WEIGHTS_SUFFIX = ".weights.h5"


SWIN_IMAGE_SIZE_MULTIPLE = 224  # patch 4 x 3 merges x window 7: every stage holds whole windows


def _swin_tiny(image_shape):
    """Swin-T (Liu et al. 2021) from keras-hub."""
    if image_shape[0] % SWIN_IMAGE_SIZE_MULTIPLE or image_shape[1] % SWIN_IMAGE_SIZE_MULTIPLE:
        # keras-hub 0.32 shrinks windows on small feature maps but keeps a 7x7 position-bias
        # table, which fails; only sizes giving whole 7x7 windows at every stage build.
        raise ValueError(f"swin needs image sides that are multiples of {SWIN_IMAGE_SIZE_MULTIPLE}, "
                         f"got {image_shape[:2]}")
    import keras_hub  # imported here: it takes seconds, and only Swin needs it
    return keras_hub.models.SwinTransformerBackbone(
        image_shape=image_shape, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
        window_size=7, drop_path=0.1)


def _keras_application(constructor):
    def build(image_shape):
        return constructor(include_top=False, weights=None, input_shape=image_shape,
                           include_preprocessing=False)
    return build


# name -> (backbone factory taking image_shape, accepts torchvision checkpoints)
ARCHITECTURES = {
    "resnet18": (lambda shape: ResNet18Backbone(image_shape=shape), True),
    # Cut after stage 3 (256 channels, 2.8M parameters): every layer is in the shared partial checkpoint.
    "resnet18_stage3": (lambda shape: ResNet18Backbone(image_shape=shape, stages=3), True),
    "alexnet": (lambda shape: AlexNetBackbone(image_shape=shape), True),
    "mobilenetv3": (_keras_application(keras.applications.MobileNetV3Large), False),
    "efficientnetv2": (_keras_application(keras.applications.EfficientNetV2B0), False),
    "convnext": (convnext_tiny, False),
    "swin": (_swin_tiny, False),
}


def _load_keras_weights(backbone, path):
    backbone.load_weights(path)
    return WeightLoadReport(
        source=str(path), sha256=file_sha256(path),
        mode="strict", loaded_keys=tuple(w.path for w in backbone.weights), skipped_keys=(),
        fresh_layers=(), description=f"Keras weights file {pathlib.Path(path).name}, full")


def build_classifier(arch="resnet18", image_size=224, weights=None, weights_mode="auto",
                     weights_origin="ImageNet", pooling="avg"):
    """(classifier, WeightLoadReport or None): `arch` body + the study's head, weights from `weights`.

    weights=None trains from scratch. See the module docstring for the formats
    each architecture accepts; `weights_origin` names the checkpoint's training
    data in the report's description.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    make_backbone, takes_torchvision = ARCHITECTURES[arch]
    backbone = make_backbone((image_size, image_size, 3))
    report = None
    if weights is not None:
        name = pathlib.Path(weights).name.lower()
        if name.endswith(KERAS_WEIGHTS_SUFFIX):
            report = _load_keras_weights(backbone, weights)
        elif name.endswith(TORCHVISION_SUFFIXES) and takes_torchvision:
            report = load_torchvision_weights(backbone, weights, mode=weights_mode, origin=weights_origin)
        else:
            accepted = [KERAS_WEIGHTS_SUFFIX] + (list(TORCHVISION_SUFFIXES) if takes_torchvision else [])
            raise ValueError(f"{weights}: {arch} accepts weights files ending in {accepted}")
    return build_image_classifier(backbone, image_size=image_size, pooling=pooling), report
