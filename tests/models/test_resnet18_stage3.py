"""ResNet-18 cut after stage 3 (`resnet18_stage3`): size, shape, weights from full and partial checkpoints,
serialisation."""

import keras
import numpy as np
import pytest

from models import CheckpointMismatchError, build_classifier
from models.resnet18_backbone import ResNet18Backbone
from models.torchvision_weights import expected_tensors, load_torchvision_weights
from tests.models.helpers import SHARED_WEIGHTS, require_shared
from tests.models.random_resnet import random_resnet_state_dict, resnet_state_dict_shapes

STAGE3_MODULES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")
SHARED_MISSING = ("layer4.0.conv1", "layer4.0.bn1", "layer4.0.conv2", "layer4.0.bn2",
                  "layer4.1.conv1", "layer4.1.bn1", "layer4.1.conv2", "layer4.1.bn2")


def _stage3_keys(state):
    return {k: v for k, v in state.items() if k.startswith(STAGE3_MODULES) and not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def state():
    return random_resnet_state_dict(seed=5)


def _assert_body_equals_checkpoint(backbone, state):
    """Every tensor of the body, in Keras layout, equals the checkpoint's tensor of the same torchvision name."""
    expected = expected_tensors(backbone)
    assert set(expected) == set(_stage3_keys(state))
    for key, (layer, index, torch_shape) in expected.items():
        value = state[key].transpose(2, 3, 1, 0) if len(torch_shape) == 4 else state[key]
        np.testing.assert_array_equal(layer.weights[index].numpy(), value, err_msg=key)


def test_the_body_has_torchvisions_parameters_up_to_layer3_and_256_channels_at_one_16th():
    backbone = ResNet18Backbone(image_shape=(224, 224, 3), stages=3)
    assert backbone.output_shape == (None, 14, 14, 256)
    trainable = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    torchvision = sum(int(np.prod(shape)) for name, shape in resnet_state_dict_shapes().items()
                      if name.startswith(STAGE3_MODULES) and not name.endswith(("running_mean", "running_var",
                                                                                 "num_batches_tracked")))
    assert trainable == torchvision
    assert 2.7e6 < trainable < 2.9e6  # the issue's ~2.8M, against 11.2M for the whole body
    model, _ = build_classifier("resnet18_stage3", image_size=64)
    assert model.output_shape == (None, 1)
    assert model.get_layer("head_dense").kernel.shape == (256, 512)  # fastai's head on 256 channels


def test_full_checkpoint_loads_strictly_with_stage4_skipped(tmp_path, state):
    path = tmp_path / "resnet18.npz"
    np.savez(path, **state)
    backbone = ResNet18Backbone(image_shape=(64, 64, 3), stages=3)
    report = load_torchvision_weights(backbone, path, mode="strict", origin="random test")
    _assert_body_equals_checkpoint(backbone, state)
    assert report.fresh_layers == ()
    assert set(report.skipped_keys) == {k for k in state if not k.startswith(STAGE3_MODULES)
                                        or k.endswith("num_batches_tracked")}
    assert report.description == "random test, full; stage-4 not in this body"


def test_a_checkpoint_without_stage4_convs_fills_the_whole_body(tmp_path, state):
    """The shared partial file's layout: stage 4's 3x3 convs absent, which this body does not have."""
    partial = {k: v for k, v in state.items() if not k.startswith(SHARED_MISSING)}
    path = tmp_path / "partial.npz"
    np.savez(path, **partial)
    backbone = ResNet18Backbone(image_shape=(64, 64, 3), stages=3)
    report = load_torchvision_weights(backbone, path)
    assert report.mode == "partial" and report.fresh_layers == ()
    _assert_body_equals_checkpoint(backbone, state)


def test_the_shared_partial_weights_fill_conv1_to_layer3():
    weights = require_shared(SHARED_WEIGHTS)
    model, report = build_classifier("resnet18_stage3", image_size=64, weights=weights)
    assert report.fresh_layers == () and report.description == "ImageNet, full; stage-4 not in this body"
    with np.load(weights) as archive:
        _assert_body_equals_checkpoint(model.get_layer("backbone"), {k: archive[k] for k in archive.files})


def test_only_stage4_is_skipped_a_wrongly_shaped_layer3_tensor_is_an_error(tmp_path, state):
    broken = dict(state, **{"layer3.1.conv2.weight": np.zeros((256, 256, 1, 1), np.float32)})
    path = tmp_path / "broken.npz"
    np.savez(path, **broken)
    with pytest.raises(CheckpointMismatchError, match=r"wrongly shaped keys: \['layer3\.1\.conv2\.weight"):
        load_torchvision_weights(ResNet18Backbone(image_shape=(64, 64, 3), stages=3), path)


def test_stages_survive_saving_and_loading(tmp_path):
    model, _ = build_classifier("resnet18_stage3", image_size=64)
    images = np.random.RandomState(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert loaded.get_layer("backbone").stages == 3
    assert loaded.get_layer("backbone").get_config()["stages"] == 3
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    rebuilt = ResNet18Backbone.from_config(ResNet18Backbone(image_shape=(64, 64, 3), stages=3).get_config())
    assert not any(layer.name.startswith("layer4") for layer in rebuilt.layers)


def test_stages_out_of_range_are_refused():
    with pytest.raises(ValueError, match="stages must be between 1 and 4"):
        ResNet18Backbone(image_shape=(64, 64, 3), stages=5)
