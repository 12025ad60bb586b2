"""ImageNet mean/std normalisation as the first layer of every classifier.

Normalising inside the model means training, evaluation and serving all feed the
same thing (float RGB in [0, 255]) and cannot drift apart. The layer always
computes in float32: under mixed bfloat16 the backbone casts its output itself.
"""

import keras
from keras import ops

from models.serialization import SERIALIZATION_PACKAGE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ImageNetNormalization(keras.layers.Layer):
    """(x / 255 - mean) / std per RGB channel, as torchvision's transforms.Normalize after ToTensor."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def call(self, images):
        mean = ops.convert_to_tensor([255.0 * m for m in self.mean], dtype="float32")
        std = ops.convert_to_tensor([255.0 * s for s in self.std], dtype="float32")
        return (ops.cast(images, "float32") - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        return config
