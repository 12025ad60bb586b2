"""AlexNet's convolutional body, laid out like torchvision's `alexnet().features`.

fastai cuts AlexNet before its average pool and classifier (model_meta cut=-2),
so the body is `features` alone and the study's head goes on top. Layer names
map to torchvision modules as in ResNet-18 (Keras '_' is torchvision '.'):
`features_0` is `features.0` (weight OIHW -> HWIO, bias), and so on for
features.3, .6, .8, .10; the ReLUs and max-pools hold no weights.
"""

import keras
from keras import layers

from models.serialization import SERIALIZATION_PACKAGE

# (torchvision index, filters, kernel, stride, padding, max-pool after)
CONV_LAYERS = (
    (0, 64, 11, 4, 2, True),
    (3, 192, 5, 1, 2, True),
    (6, 384, 3, 1, 1, False),
    (8, 256, 3, 1, 1, False),
    (10, 256, 3, 1, 1, True),
)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class AlexNetBackbone(keras.Model):
    """Channels-last AlexNet features: (H, W, 3) normalised image -> (~H/37, ~W/37, 256); H >= 63."""

    def __init__(self, image_shape=(None, None, 3), **kwargs):
        inputs = keras.Input(shape=image_shape, name="images")
        x = inputs
        for index, filters, kernel, stride, padding, pool_after in CONV_LAYERS:
            x = layers.ZeroPadding2D(padding, name=f"features_{index}_pad")(x)
            # torch's default conv init (kaiming_uniform with a=sqrt(5)) is variance 1/(3 fan_in).
            initializer = keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")
            x = layers.Conv2D(filters, kernel, strides=stride, kernel_initializer=initializer,
                              name=f"features_{index}")(x)
            x = layers.ReLU(name=f"features_{index + 1}")(x)
            if pool_after:
                x = layers.MaxPooling2D(3, strides=2, name=f"features_{index + 2}")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        self.image_shape = tuple(image_shape)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "image_shape": self.image_shape}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
