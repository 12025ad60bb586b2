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


def _old_numpy_stretch(values):
    """The stretch that wrote the TFRecords before it moved into TensorFlow: kept to prove nothing changed."""
    values = np.asarray(values, np.float64)
    low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip((values - low) * scale, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("high", [4095, 65535, 1])
def test_the_stretch_is_the_one_that_wrote_the_tfrecords(high):
    values = np.random.default_rng(high).integers(0, high + 1, (57, 43)).astype(np.uint16)
    np.testing.assert_array_equal(preprocessing.stretch_to_uint8(values).numpy(), _old_numpy_stretch(values))
    assert preprocessing.stretch_to_uint8(np.full((4, 4), 7, np.uint16)).numpy().max() == 0


def test_a_sixteen_bit_gray_png_decodes_to_what_image_io_stores(tmp_path):
    from images import image_io
    values = (xray_like().astype(np.uint16) * 16)  # a 12-bit range stored in 16 bits
    path = tmp_path / "gray16.png"
    path.write_bytes(encode(Image.fromarray(values), "PNG"))
    stored = image_io.load_standard_image(path)
    raw = preprocessing.decode_image(tf.constant(path.read_bytes())).numpy()
    np.testing.assert_array_equal(raw, preprocessing.decode_image(tf.constant(stored.encoded)).numpy())
    assert raw.min() == 0 and raw.max() == 255 and raw.shape == values.shape + (3,)
