import keras
import numpy as np

import models
from components import gradcam


def _brightness_classifier(size=32):
    """A backbone that passes brightness through and a head whose weights are all positive:
    the logit grows with brightness everywhere, so Grad-CAM must point at the bright region."""
    inputs = keras.Input((size, size, 3))
    features = keras.layers.Conv2D(4, 1, kernel_initializer="ones", activation="relu")(inputs)
    features = keras.layers.AveragePooling2D(4)(features)
    model = models.build_image_classifier(keras.Model(inputs, features), image_size=size)
    for name in ("head_dense", "logit"):
        layer = model.get_layer(name)
        layer.set_weights([np.abs(w) + 0.01 for w in layer.get_weights()])
    return model


def test_heat_map_points_at_what_raises_the_logit():
    images = np.zeros((2, 32, 32, 3), np.float32)
    images[0, :16, :16] = 255  # bright top-left
    images[1, 16:, 16:] = 255  # bright bottom-right
    heat = gradcam.gradcam(_brightness_classifier(), images)
    assert heat.shape == (2, 32, 32) and heat.min() >= 0 and heat.max() == 1.0
    assert heat[0, :12, :12].mean() > 3 * heat[0, 20:, 20:].mean()
    assert heat[1, 20:, 20:].mean() > 3 * heat[1, :12, :12].mean()


def test_works_on_resnet18():
    model, _ = models.build_classifier("resnet18", image_size=64)
    heat = gradcam.gradcam(model, np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)))
    assert heat.shape == (2, 64, 64) and np.isfinite(heat).all()
