"""The study's classifier contract: 0-255 RGB in, one float32 logit out, freezable body, saveable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import build_classifier, set_body_trainable
from models.classifier import build_image_classifier
from models.preprocessor import ImageNetNormalization
from models.resnet18_backbone import ResNet18Backbone

SIZE = 64


def _images(batch=4, seed=0):
    return np.random.RandomState(seed).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype(np.float32)


def _train_step(model, images, labels):
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model.train_on_batch(images, labels)


def test_first_layer_normalises_and_output_is_one_logit():
    model, report = build_classifier("resnet18", image_size=SIZE)
    assert report is None
    assert isinstance(model.layers[1], ImageNetNormalization)
    assert model.input_shape == (None, SIZE, SIZE, 3) and model.output_shape == (None, 1)


def test_logit_is_float32_under_mixed_bfloat16(mixed_bfloat16):
    model, _ = build_classifier("resnet18", image_size=SIZE)
    assert model.get_layer("backbone").get_layer("conv1").compute_dtype == "bfloat16"
    assert model(_images(2), training=False).dtype == "float32"


def test_head_follows_fastai_create_head():
    model, _ = build_classifier("resnet18", image_size=SIZE)
    head = [l.name for l in model.layers[model.layers.index(model.get_layer("backbone")) + 1:]]
    assert head == ["head_avg_pool", "head_bn1", "head_dropout1", "head_dense", "head_relu",
                    "head_bn2", "head_dropout2", "logit"]
    assert model.get_layer("head_dense").units == 512 and not model.get_layer("logit").use_bias
    assert (model.get_layer("head_dropout1").rate, model.get_layer("head_dropout2").rate) == (0.25, 0.5)


def test_concat_pooling_doubles_head_input_like_fastai():
    model = build_image_classifier(ResNet18Backbone(image_shape=(SIZE, SIZE, 3)), SIZE, pooling="concat")
    assert model.get_layer("head_bn1").input.shape == (None, 1024)
    with pytest.raises(ValueError, match="pooling"):
        build_image_classifier(ResNet18Backbone(image_shape=(SIZE, SIZE, 3)), SIZE, pooling="max")


def test_frozen_body_keeps_weights_and_batch_norm_statistics_head_still_trains():
    model, _ = build_classifier("resnet18", image_size=SIZE)
    backbone = model.get_layer("backbone")
    set_body_trainable(model, False)
    assert all(not w.trainable for w in backbone.weights)
    body_before = [w.numpy() for w in backbone.weights]
    head_before = model.get_layer("head_dense").kernel.numpy()
    _train_step(model, _images(), np.array([[0], [1], [0], [1]], np.float32))
    for before, after in zip(body_before, backbone.weights):
        np.testing.assert_array_equal(before, after.numpy())  # includes BN moving statistics
    assert not np.array_equal(head_before, model.get_layer("head_dense").kernel.numpy())


def test_frozen_batch_norm_runs_in_inference_mode_when_training():
    model, _ = build_classifier("resnet18", image_size=SIZE)
    set_body_trainable(model, False)
    backbone, images = model.get_layer("backbone"), _images()
    np.testing.assert_allclose(backbone(images, training=True).numpy(),
                               backbone(images, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_unfreezing_trains_the_body_again():
    model, _ = build_classifier("resnet18", image_size=SIZE)
    set_body_trainable(model, False)
    set_body_trainable(model, True)
    conv1 = model.get_layer("backbone").get_layer("conv1")
    before = conv1.kernel.numpy()
    _train_step(model, _images(), np.array([[0], [1], [0], [1]], np.float32))
    assert not np.array_equal(before, conv1.kernel.numpy())


def test_always_trainable_layers_train_while_the_body_is_frozen():
    model, _ = build_classifier("resnet18", image_size=SIZE)
    fresh = ("layer4_1_conv2", "layer4_1_bn2")
    set_body_trainable(model, False, always_trainable=fresh)
    trainable = {w.path.split("/")[-2] for w in model.get_layer("backbone").trainable_weights}
    assert trainable == set(fresh)
    with pytest.raises(ValueError, match="not_a_layer"):
        set_body_trainable(model, False, always_trainable=["not_a_layer"])


def test_gradients_reach_every_trainable_weight():
    model, _ = build_classifier("resnet18", image_size=SIZE)
    with tf.GradientTape() as tape:
        logits = model(_images(), training=True)
        loss = keras.losses.BinaryCrossentropy(from_logits=True)(np.array([[0], [1], [0], [1]]), logits)
    gradients = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in gradients)


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model, _ = build_classifier("resnet18", image_size=SIZE)
    _train_step(model, _images(), np.array([[0], [1], [0], [1]], np.float32))  # move BN statistics
    images = _images(seed=1)
    model.save(tmp_path / "classifier.keras")
    restored = keras.models.load_model(tmp_path / "classifier.keras")
    assert isinstance(restored.get_layer("backbone"), ResNet18Backbone)
    np.testing.assert_array_equal(model.predict(images, verbose=0), restored.predict(images, verbose=0))
