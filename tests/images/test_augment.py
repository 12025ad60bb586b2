import numpy as np
import pytest
import tensorflow as tf

from components import configs
from images import augment


def _images(size=32):
    rng = np.random.default_rng(0)
    x = np.zeros((4, size, size, 3), np.float32)
    x[:, size // 2 - 4:size // 2 + 4, size // 2 - 4:size // 2 + 4] = 200.0
    return tf.constant(x + rng.uniform(0, 20, x.shape).astype(np.float32))


def test_zero_strength_is_the_identity():
    cfg = configs.AugmentConfig(max_zoom=1.0, max_rotate=0.0, max_warp=0.0, max_lighting=0.0)
    images = _images()
    out = augment.fused_augment(images, cfg, tf.constant([1, 2], tf.int64))
    np.testing.assert_allclose(out.numpy(), images.numpy(), atol=1e-3)


def test_zoom_enlarges_the_centre_square():
    cfg = configs.AugmentConfig(max_zoom=1.5, max_rotate=0.0, max_warp=0.0, max_lighting=0.0, p_affine=1.0)
    images = _images()
    out = augment.fused_augment(images, cfg, tf.constant([3, 4], tf.int64)).numpy()
    assert ((out[..., 0] > 100).sum(axis=(1, 2)) >= (images.numpy()[..., 0] > 100).sum(axis=(1, 2))).all()


@pytest.mark.parametrize("method", ["fused", "keras_layers"])
def test_default_augmentation_stays_in_range_and_changes_images(method):
    fn = augment.make_augment_fn(configs.AugmentConfig(method=method), seed=0)
    images = _images()
    out = fn(images, tf.constant([5, 6], tf.int64)).numpy()
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert np.abs(out - images.numpy()).mean() > 1.0


def test_fused_is_a_pure_function_of_the_seed():
    cfg = configs.AugmentConfig()
    images = _images()
    a = augment.fused_augment(images, cfg, tf.constant([7, 8], tf.int64)).numpy()
    b = augment.fused_augment(images, cfg, tf.constant([7, 8], tf.int64)).numpy()
    c = augment.fused_augment(images, cfg, tf.constant([7, 9], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1.0
