"""Write tests/data/golden/: torchvision reference outputs for the Keras port (run once, with torch).

    /work/torchvenv/bin/python tools/golden/make_golden.py

Needs torch + torchvision (never the tests). Writes only small files:
- resnet18_logits.npz: seed, input images (uint8 NHWC), torchvision float64
  eval-mode logits (1000 classes) for the random ResNet-18 of `tests/models/random_resnet.py`,
  its weights checksum, and torch float32 logits for reference;
- tiny_state_dict.pth (zip format) and tiny_state_dict_legacy.pth (pre-1.6
  format) holding a few tensors of several dtypes, a parameter, a transposed
  view and an offset view sharing storage; tiny_state_dict.npz holds their
  expected values (bfloat16 stored as float32).
"""

import pathlib
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from tests.models.random_resnet import random_resnet_state_dict, weights_checksum  # noqa: E402

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "golden"
WEIGHTS_SEED = 18
INPUT_SEED = 224
IMAGE_SIZE = 224
BATCH = 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_logits(state, images, dtype):
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    model = model.to(dtype).eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(dtype) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((x - mean) / std).numpy()


def write_resnet18_golden():
    state = random_resnet_state_dict(WEIGHTS_SEED)
    images = np.random.RandomState(INPUT_SEED).randint(
        0, 256, (BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.uint8)
    logits64 = torchvision_logits(state, images, torch.float64)
    logits32 = torchvision_logits(state, images, torch.float32)
    np.savez_compressed(GOLDEN_DIR / "resnet18_logits.npz", weights_seed=WEIGHTS_SEED, images=images,
                        logits=logits64, torch_float32_logits=logits32,
                        weights_checksum=weights_checksum(state))
    print(f"logits: std {logits64.std():.3f}, max |.| {np.abs(logits64).max():.3f}; "
          f"torch float32 vs float64 max abs diff {np.abs(logits32 - logits64).max():.2e}")


def write_tiny_checkpoints():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(10, generator=generator)
    matrix = torch.randn(3, 4, generator=generator)
    tiny = {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=generator),
        "bn.running_var": torch.rand(4, generator=generator) + 0.5,
        "half": torch.randn(5, generator=generator).half(),
        "bfloat16": torch.randn(3, generator=generator).bfloat16(),
        "double": torch.randn(2, 2, generator=generator).double(),
        "steps": torch.tensor(7, dtype=torch.int64),
        "parameter": torch.nn.Parameter(torch.randn(2, generator=generator)),
        "base": base,
        "offset_view": base[4:],  # shares base's storage at offset 4
        "transposed": matrix.t(),  # non-contiguous strides
    }
    torch.save(tiny, GOLDEN_DIR / "tiny_state_dict.pth")
    torch.save(tiny, GOLDEN_DIR / "tiny_state_dict_legacy.pth", _use_new_zipfile_serialization=False)
    expected = {k: (v.detach().float() if v.dtype == torch.bfloat16 else v.detach()).numpy()
                for k, v in tiny.items()}
    np.savez(GOLDEN_DIR / "tiny_state_dict.npz", **expected)


if __name__ == "__main__":
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    write_resnet18_golden()
    write_tiny_checkpoints()
    for path in sorted(GOLDEN_DIR.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")
