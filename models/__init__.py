"""The study's image classifiers: ResNet-18 (torchvision layout) and Table 2's comparison models.

Importing this package registers the custom layers, so `keras.models.load_model`
can read a saved `.keras` classifier.
"""

from models.classifier import build_image_classifier, set_body_trainable
from models.registry import ARCHITECTURES, build_classifier
from models.torch_checkpoint import CheckpointFormatError, UnsafeCheckpointError
from models.torchvision_weights import (CheckpointMismatchError, WeightLoadReport,
                                        load_torchvision_weights, read_state_dict)

__all__ = [
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
