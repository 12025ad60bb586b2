"""Weight port from torchvision checkpoints: formats, strict/partial modes, the shared partial file."""

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from models import CheckpointMismatchError, build_classifier, load_torchvision_weights
from models.resnet18_backbone import ResNet18Backbone
from models.torchvision_weights import describe_load
from tests.models.helpers import GOLDEN_DIR, SAMPLE_XRAY, SHARED_WEIGHTS, require_shared
from tests.models.random_resnet import RESNET34_BLOCKS, random_resnet_state_dict

STAGE4_3X3_LAYERS = ("layer4_0_conv1", "layer4_0_bn1", "layer4_0_conv2", "layer4_0_bn2",
                     "layer4_1_conv1", "layer4_1_bn1", "layer4_1_conv2", "layer4_1_bn2")
SHARED_DESCRIPTION = "ImageNet, partial: conv1-layer3 + stage-4 shortcut; stage-4 3x3 convs random"


@pytest.fixture(scope="module")
def state():
    return random_resnet_state_dict(seed=3)


@pytest.fixture
def backbone():
    return ResNet18Backbone(image_shape=(64, 64, 3))


def _assert_loaded(backbone, state):
    np.testing.assert_array_equal(backbone.get_layer("conv1").kernel.numpy(),
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    bn = backbone.get_layer("layer4_0_downsample_1")
    for variable, key in [(bn.gamma, "weight"), (bn.beta, "bias"), (bn.moving_mean, "running_mean"),
                          (bn.moving_variance, "running_var")]:
        np.testing.assert_array_equal(variable.numpy(), state[f"layer4.0.downsample.1.{key}"])


def test_safetensors_checkpoint_loads_strictly_with_layout_conversion(tmp_path, backbone, state):
    """timm's resnet18.tv_in1k uses torchvision's key names; num_batches_tracked is ignored."""
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    report = load_torchvision_weights(backbone, path)
    assert report.mode == "strict" and report.fresh_layers == ()
    assert report.description == "ImageNet, full"
    assert {"fc.weight", "fc.bias", "bn1.num_batches_tracked"} <= set(report.skipped_keys)
    assert not any(k.startswith("fc.") for k in report.loaded_keys)
    assert len(report.loaded_keys) == 100  # 102 tensors minus fc.weight and fc.bias
    _assert_loaded(backbone, state)


def test_half_precision_checkpoint_is_loaded_as_float32(tmp_path, backbone, state):
    path = tmp_path / "half.safetensors"
    save_file({k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in state.items()}, str(path))
    load_torchvision_weights(backbone, path)
    np.testing.assert_allclose(backbone.get_layer("conv1").kernel.numpy(),
                               state["conv1.weight"].transpose(2, 3, 1, 0), rtol=1e-3, atol=1e-4)


def test_strict_mode_lists_every_missing_key_in_one_error(tmp_path, backbone, state):
    path = tmp_path / "incomplete.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("layer2.1.")}, str(path))
    with pytest.raises(CheckpointMismatchError) as error:
        load_torchvision_weights(backbone, path)
    message = str(error.value)
    assert "incomplete.safetensors" in message and "strict" in message
    assert "layer2.1.conv1.weight" in message and "layer2.1.bn2.running_var" in message


def test_resnet34_checkpoint_is_refused_in_every_mode_and_loads_nothing(tmp_path, backbone):
    path = tmp_path / "resnet34.npz"
    np.savez(path, **random_resnet_state_dict(seed=34, blocks=RESNET34_BLOCKS))
    before = backbone.get_layer("conv1").kernel.numpy()
    for mode in ("strict", "partial"):
        with pytest.raises(CheckpointMismatchError, match=r"unexpected keys: \[.*'layer1\.2\.bn1\.bias'"):
            load_torchvision_weights(backbone, path, mode=mode)
    np.testing.assert_array_equal(backbone.get_layer("conv1").kernel.numpy(), before)


def test_wrongly_shaped_key_is_an_error_even_in_partial_mode(tmp_path, backbone, state):
    path = tmp_path / "wide.npz"
    np.savez(path, **{**state, "layer1.0.conv1.weight": np.zeros((64, 64, 5, 5), np.float32)})
    with pytest.raises(CheckpointMismatchError,
                       match=r"layer1\.0\.conv1\.weight: file \(64, 64, 5, 5\), model \(64, 64, 3, 3\)"):
        load_torchvision_weights(backbone, path, mode="partial")


def test_partial_mode_refuses_a_half_present_layer(tmp_path, backbone, state):
    path = tmp_path / "half_bn.npz"
    np.savez(path, **{k: v for k, v in state.items() if k != "bn1.running_var"})
    with pytest.raises(CheckpointMismatchError, match=r"partly present layers: \['bn1\.running_var'\]"):
        load_torchvision_weights(backbone, path, mode="partial")


def test_auto_mode_is_partial_for_npz_and_strict_for_pth(tmp_path, backbone, state):
    partial_state = {k: v for k, v in state.items() if not k.startswith("layer3.1.")}
    np.savez(tmp_path / "partial.npz", **partial_state)
    report = load_torchvision_weights(backbone, tmp_path / "partial.npz", origin="random test")
    assert report.mode == "partial"
    assert report.fresh_layers == ("layer3_1_conv1", "layer3_1_bn1", "layer3_1_conv2", "layer3_1_bn2")
    assert report.description == "random test, partial: conv1-layer2 + stage-3 block 0 + layer4; stage-3 block 1 random"
    _assert_loaded(backbone, state)
    with pytest.raises(CheckpointMismatchError, match=r"\(strict mode\).*missing keys: \['bn1\.bias'"):
        load_torchvision_weights(backbone, GOLDEN_DIR / "tiny_state_dict.pth")


def test_description_of_the_shared_partial_layout():
    modules = ["conv1", "bn1", "layer3.1.bn2", "layer4.0.downsample.0", "layer4.0.conv1", "layer4.1.bn2"]
    assert describe_load("ImageNet", modules, {"layer4.0.conv1", "layer4.1.bn2"}) == SHARED_DESCRIPTION
    assert describe_load("ImageNet", modules, set()) == "ImageNet, full"
    assert describe_load("ImageNet", modules, {"layer4.0.conv1"}) == (
        "ImageNet, partial: conv1-layer3 + stage-4 (0.downsample.0, 1.bn2); stage-4 (0.conv1) random")


def test_shared_partial_file_reports_exactly_the_four_missing_stage4_convs():
    path = require_shared(SHARED_WEIGHTS)
    report = load_torchvision_weights(ResNet18Backbone(image_shape=(64, 64, 3)), path)
    assert report.mode == "partial"
    assert report.fresh_layers == STAGE4_3X3_LAYERS
    assert report.description == SHARED_DESCRIPTION
    assert set(report.skipped_keys) == {"fc.weight", "fc.bias"}
    assert len(report.loaded_keys) == 80 and len(report.sha256) == 64
    assert str(path) == report.source


def test_real_xray_gets_a_finite_prediction_with_the_shared_weights():
    weights, xray = require_shared(SHARED_WEIGHTS), require_shared(SAMPLE_XRAY)
    model, report = build_classifier("resnet18", image_size=224, weights=weights)
    image = np.asarray(Image.open(xray).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
    logit = model.predict(image[None], verbose=0)
    assert logit.shape == (1, 1) and logit.dtype == np.float32 and np.isfinite(logit).all()
    assert report.fresh_layers == STAGE4_3X3_LAYERS
    # The pretrained stem really is in the model (not left at its random initialisation).
    np.testing.assert_array_equal(model.get_layer("backbone").get_layer("conv1").kernel.numpy(),
                                  np.load(weights)["conv1.weight"].transpose(2, 3, 1, 0))
