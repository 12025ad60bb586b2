"""ResNet-18 architecture: torchvision layout, serialisation, and the golden parity test."""

import keras
import numpy as np
import pytest

from models.preprocessor import ImageNetNormalization
from models.resnet18_backbone import ResNet18Backbone
from models.torchvision_weights import expected_tensors, load_torchvision_weights
from tests.models.helpers import GOLDEN_DIR
from tests.models.random_resnet import random_resnet_state_dict, resnet_state_dict_shapes, weights_checksum

TORCHVISION_RESNET18_PARAMETERS = 11_689_512  # sum(p.numel() for p in resnet18().parameters())
TORCHVISION_FC_PARAMETERS = 512 * 1000 + 1000
GOLDEN_TOLERANCE = 1e-4


def test_feature_map_is_one_32nd_of_the_input_with_512_channels():
    backbone = ResNet18Backbone(image_shape=(224, 224, 3))
    assert backbone.output_shape == (None, 7, 7, 512)
    assert ResNet18Backbone(image_shape=(64, 64, 3)).output_shape == (None, 2, 2, 512)


def test_trainable_parameters_equal_torchvisions_without_fc():
    backbone = ResNet18Backbone(image_shape=(224, 224, 3))
    trainable = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    assert trainable == TORCHVISION_RESNET18_PARAMETERS - TORCHVISION_FC_PARAMETERS


def test_layer_names_map_one_to_one_to_torchvision_state_dict_names():
    torchvision_names = {name for name in resnet_state_dict_shapes()
                         if not name.startswith("fc.") and not name.endswith("num_batches_tracked")}
    mapped = expected_tensors(ResNet18Backbone(image_shape=(64, 64, 3)))
    assert set(mapped) == torchvision_names
    assert all(shape == resnet_state_dict_shapes()[name] for name, (_, _, shape) in mapped.items())


def test_batch_norms_use_torch_epsilon_and_momentum_and_convs_have_no_bias():
    backbone = ResNet18Backbone(image_shape=(64, 64, 3))
    norms = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    convs = [l for l in backbone.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(norms) == len(convs) == 20
    assert all(l.epsilon == 1e-5 and l.momentum == 0.9 for l in norms)
    assert not any(l.use_bias for l in convs)


def test_config_round_trip_rebuilds_the_same_architecture():
    backbone = ResNet18Backbone(image_shape=(96, 96, 3), name="body")
    rebuilt = ResNet18Backbone.from_config(backbone.get_config())
    assert rebuilt.name == "body" and rebuilt.image_shape == (96, 96, 3)
    assert [l.name for l in rebuilt.layers] == [l.name for l in backbone.layers]


def test_logits_match_torchvision_golden_within_1e_4(tmp_path):
    """Random weights AND random batch-norm statistics: any padding/epsilon/layout slip shows."""
    golden = np.load(GOLDEN_DIR / "resnet18_logits.npz")
    state = random_resnet_state_dict(int(golden["weights_seed"]))
    assert weights_checksum(state) == pytest.approx(float(golden["weights_checksum"]), rel=1e-12)
    np.savez(tmp_path / "random_resnet18.npz", **state)

    images = golden["images"]
    backbone = ResNet18Backbone(image_shape=images.shape[1:])
    report = load_torchvision_weights(backbone, tmp_path / "random_resnet18.npz", mode="strict")
    assert report.fresh_layers == () and set(report.skipped_keys) >= {"fc.weight", "fc.bias"}
    features_model = keras.Sequential([keras.Input(images.shape[1:]), ImageNetNormalization(),
                                       backbone, keras.layers.GlobalAveragePooling2D()])
    features = features_model.predict(images.astype(np.float32), verbose=0).astype(np.float64)
    logits = features @ state["fc.weight"].T.astype(np.float64) + state["fc.bias"]

    assert np.abs(golden["logits"]).std() > 1.0, "golden logits too small to reveal a port error"
    assert np.abs(logits - golden["logits"]).max() <= GOLDEN_TOLERANCE
