"""The study's image classifiers: ResNet-18 (torchvision layout) and Table 2's comparison models.

Importing this package registers the custom layers, so `keras.models.load_model`
can read a saved `.keras` classifier.
"""

from models import (alexnet_backbone, classifier, convnext, fused_batch_norm, preprocessor, registry,
                    resnet18_backbone, torch_checkpoint, torchvision_weights)
from models.classifier import build_image_classifier, set_body_trainable
from models.registry import ARCHITECTURES, build_classifier
from models.torch_checkpoint import CheckpointFormatError, UnsafeCheckpointError
from models.torchvision_weights import (CheckpointMismatchError, WeightLoadReport,
                                        load_torchvision_weights, read_state_dict)

# What a trained model's numbers depend on: part of the train stage's cache key.
MODULES = (alexnet_backbone, classifier, convnext, fused_batch_norm, preprocessor, registry, resnet18_backbone,
           torch_checkpoint, torchvision_weights)

__all__ = [
    "MODULES",
    "ARCHITECTURES",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "WeightLoadReport",
    "build_classifier",
    "build_image_classifier",
    "load_torchvision_weights",
    "read_state_dict",
    "set_body_trainable",
]
