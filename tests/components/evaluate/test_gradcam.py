import keras
import numpy as np
import pytest

import models
from components.evaluate import gradcam


def _brightness_classifier(size=32, as_tokens=False):
    """A backbone that passes brightness through and a head whose weights are all positive:
    the logit grows with brightness everywhere, so Grad-CAM must point at the bright region.
    `as_tokens`: the backbone flattens its 8x8 map to 64 tokens row-major, as Swin does."""
    inputs = keras.Input((size, size, 3))
    features = keras.layers.Conv2D(4, 1, kernel_initializer="ones", activation="relu")(inputs)
    features = keras.layers.AveragePooling2D(4)(features)
    if as_tokens:
        features = keras.layers.Reshape((-1, 4))(features)
    model = models.build_image_classifier(keras.Model(inputs, features), image_size=size)
    for name in ("head_dense", "logit"):
        layer = model.get_layer(name)
        layer.set_weights([np.abs(w) + 0.01 for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("as_tokens", [False, True], ids=["feature_map", "tokens"])
def test_heat_map_points_at_what_raises_the_logit(as_tokens):
    images = np.zeros((2, 32, 32, 3), np.float32)
    # Top-right and bottom-left: a map laid out transposed (tokens read column-major) would swap them.
    images[0, :16, 16:] = 255
    images[1, 16:, :16] = 255
    heat = gradcam.gradcam(_brightness_classifier(as_tokens=as_tokens), images)
    assert heat.shape == (2, 32, 32) and heat.min() >= 0 and heat.max() == 1.0
    assert heat[0, :12, 20:].mean() > 3 * heat[0, 20:, :12].mean()
    assert heat[1, 20:, :12].mean() > 3 * heat[1, :12, 20:].mean()


def test_works_on_resnet18():
    model, _ = models.build_classifier("resnet18", image_size=64)
    heat = gradcam.gradcam(model, np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)))
    assert heat.shape == (2, 64, 64) and np.isfinite(heat).all()


def test_works_on_swin():
    model, _ = models.build_classifier("swin", image_size=224)
    heat = gradcam.gradcam(model, np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)))
    assert heat.shape == (1, 224, 224) and np.isfinite(heat).all() and heat.max() <= 1.0


def test_tokens_that_are_not_a_square_grid_are_refused():
    inputs = keras.Input((8, 8, 3))
    tokens = keras.layers.Reshape((-1, 3))(keras.layers.Cropping2D(((0, 0), (0, 1)))(inputs))  # 8 x 7 = 56
    model = models.build_image_classifier(keras.Model(inputs, tokens), image_size=8)
    with pytest.raises(ValueError, match="square grid of tokens; the backbone gave 56"):
        gradcam.gradcam(model, np.zeros((1, 8, 8, 3), np.float32))
