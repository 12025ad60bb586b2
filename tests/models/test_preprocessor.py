import keras
import numpy as np

from models.preprocessor import IMAGENET_MEAN, IMAGENET_STD, ImageNetNormalization


def test_normalises_0_255_rgb_like_torchvision_to_tensor_then_normalize():
    images = np.random.RandomState(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    expected = (images / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(ImageNetNormalization()(images).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_computes_in_float32_under_mixed_bfloat16(mixed_bfloat16):
    layer = ImageNetNormalization()
    assert layer.compute_dtype == "float32"
    assert layer(np.full((1, 2, 2, 3), 200.0, np.float32)).dtype == "float32"


def test_config_round_trip():
    layer = ImageNetNormalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), name="norm")
    rebuilt = keras.layers.deserialize(keras.layers.serialize(layer))
    assert (rebuilt.mean, rebuilt.std, rebuilt.name) == ((0.5,) * 3, (0.25,) * 3, "norm")
