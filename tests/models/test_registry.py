"""Every architecture of the study builds with the same contract and trains one step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import ARCHITECTURES, build_classifier
from models.preprocessor import ImageNetNormalization

SIZE = 64  # small enough to keep the suite fast, large enough for most bodies (AlexNet needs 63)
SMALLEST_SIZE = {"swin": 224}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_builds_and_takes_one_finite_training_step(arch):
    size = SMALLEST_SIZE.get(arch, SIZE)
    model, report = build_classifier(arch, image_size=size)
    assert report is None
    assert isinstance(model.layers[1], ImageNetNormalization)
    assert model.output_shape == (None, 1)
    images = np.random.RandomState(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    labels = np.array([[0.0], [1.0]], np.float32)
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = keras.losses.BinaryCrossentropy(from_logits=True)(labels, logits)
    first_body_weight = model.get_layer("backbone").trainable_weights[0]
    gradients = tape.gradient(loss, [first_body_weight] + model.trainable_weights)
    assert logits.dtype == "float32" and np.isfinite(loss.numpy())
    assert all(g is not None for g in gradients)
    # The gradient reaches the first layer of the body: the whole network is connected and trains.
    assert np.abs(gradients[0].numpy()).sum() > 0


def test_unknown_architecture_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'.*resnet18"):
        build_classifier("vgg")


def test_swin_refuses_sizes_its_windows_cannot_tile():
    with pytest.raises(ValueError, match="multiples of 224"):
        build_classifier("swin", image_size=SIZE)


def test_torchvision_checkpoint_is_refused_for_a_keras_body(tmp_path):
    path = tmp_path / "convnext.pth"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"convnext accepts weights files ending in \['.weights.h5'\]"):
        build_classifier("convnext", image_size=SIZE, weights=path)


def test_keras_weights_file_of_the_same_body_loads_exactly(tmp_path):
    model, _ = build_classifier("mobilenetv3", image_size=SIZE)
    model.get_layer("backbone").save_weights(tmp_path / "body.weights.h5")
    rebuilt, report = build_classifier("mobilenetv3", image_size=SIZE, weights=tmp_path / "body.weights.h5")
    for expected, actual in zip(model.get_layer("backbone").weights, rebuilt.get_layer("backbone").weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())
    assert report.description == "Keras weights file body.weights.h5, full" and report.fresh_layers == ()
