import numpy as np

from models import build_classifier
from models.alexnet_backbone import AlexNetBackbone
from models.torchvision_weights import expected_tensors

# torchvision alexnet().features: (index, weight shape OIHW)
TORCHVISION_CONVS = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3),
                     8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}


def test_features_have_torchvisions_output_shape_at_224():
    assert AlexNetBackbone(image_shape=(224, 224, 3)).output_shape == (None, 6, 6, 256)


def test_torchvision_alexnet_checkpoint_loads_with_its_classifier_skipped(tmp_path):
    rng = np.random.RandomState(0)
    state = {}
    for index, shape in TORCHVISION_CONVS.items():
        state[f"features.{index}.weight"] = rng.normal(0, 0.01, shape).astype(np.float32)
        state[f"features.{index}.bias"] = rng.normal(0, 0.01, shape[:1]).astype(np.float32)
    state["classifier.6.weight"] = np.zeros((1000, 4096), np.float32)
    assert set(expected_tensors(AlexNetBackbone(image_shape=(64, 64, 3)))) == set(state) - {"classifier.6.weight"}
    np.savez(tmp_path / "alexnet.npz", **state)

    model, report = build_classifier("alexnet", image_size=64, weights=tmp_path / "alexnet.npz",
                                     weights_mode="strict")
    conv = model.get_layer("backbone").get_layer("features_3")
    np.testing.assert_array_equal(conv.kernel.numpy(), state["features.3.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(conv.bias.numpy(), state["features.3.bias"])
    assert report.skipped_keys == ("classifier.6.weight",) and report.description == "ImageNet, full"
