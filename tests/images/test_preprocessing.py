import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import encode, xray_like
from images import preprocessing


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (100, 60)])
def test_output_is_a_square_of_image_size_in_0_255(size):
    encoded = encode(Image.fromarray(xray_like(size)), "JPEG")
    image = preprocessing.preprocess(tf.constant(encoded), 224).numpy()
    assert image.shape == (224, 224, 3) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 255
    np.testing.assert_array_equal(image[..., 0], image[..., 1])  # gray stays gray in RGB


def test_centre_crop_keeps_the_middle_of_a_wide_image():
    wide = np.zeros((100, 300), np.uint8)
    wide[:, 100:200] = 255  # a white middle third
    image = preprocessing.preprocess(tf.constant(encode(Image.fromarray(wide), "PNG")), 100).numpy()
    assert image[:, 5:95].mean() > 250  # the crop is the white middle
    assert image.shape == (100, 100, 3)


def test_non_image_bytes_fail_inside_the_graph():
    with pytest.raises(tf.errors.InvalidArgumentError):
        preprocessing.preprocess(tf.constant(b"not an image"))
