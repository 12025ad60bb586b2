"""File locations and helpers shared by the models tests."""

import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO_ROOT / "tests" / "data" / "golden"
SHARED_DIR = REPO_ROOT.parent / "shared"
SHARED_WEIGHTS = SHARED_DIR / "weights" / "resnet18_imagenet_partial.npz"
SAMPLE_XRAY = (SHARED_DIR / "data" / "covid-chestxray-dataset" / "images"
               / "auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg")


def require_shared(path):
    """Skip when ../shared is absent (e.g. a bare CI checkout); fail if it exists but lacks `path`."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"../shared is absent ({SHARED_DIR}): real weights and images unavailable")
    assert path.is_file(), f"{path} is missing although {SHARED_DIR} exists"
    return path


def resnet18_keras_name(torch_module):
    """torchvision module name -> Keras layer name (the mapping of models/resnet18_backbone.py)."""
    return torch_module.replace(".", "_")
