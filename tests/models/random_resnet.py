"""Deterministic random torchvision-ResNet state dicts from a numpy seed (numpy only: no torch, no TF).

Shared by `make_golden.py` (which runs torchvision on them) and the tests (which
regenerate the same tensors instead of committing a 45 MB checkpoint).
`np.random.RandomState` is used because numpy freezes its streams across
versions. Batch-norm statistics and affine parameters are random too, so a slip
in epsilon, running statistics or padding changes the logits visibly.
"""

import numpy as np

RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET34_BLOCKS = (3, 4, 6, 3)
STAGE_FILTERS = (64, 128, 256, 512)
NUM_CLASSES = 1000


def _batch_norm_shapes(module, channels):
    shapes = {f"{module}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")}
    shapes[f"{module}.num_batches_tracked"] = ()
    return shapes


def resnet_state_dict_shapes(blocks=RESNET18_BLOCKS):
    """torchvision BasicBlock ResNet tensor name -> shape, in state-dict order."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **_batch_norm_shapes("bn1", 64)}
    in_channels = 64
    for stage, (count, filters) in enumerate(zip(blocks, STAGE_FILTERS), start=1):
        for block in range(count):
            prefix = f"layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (filters, in_channels, 3, 3)
            shapes.update(_batch_norm_shapes(f"{prefix}.bn1", filters))
            shapes[f"{prefix}.conv2.weight"] = (filters, filters, 3, 3)
            shapes.update(_batch_norm_shapes(f"{prefix}.bn2", filters))
            if block == 0 and stage > 1:
                shapes[f"{prefix}.downsample.0.weight"] = (filters, in_channels, 1, 1)
                shapes.update(_batch_norm_shapes(f"{prefix}.downsample.1", filters))
            in_channels = filters
    shapes["fc.weight"] = (NUM_CLASSES, 512)
    shapes["fc.bias"] = (NUM_CLASSES,)
    return shapes


def random_resnet_state_dict(seed, blocks=RESNET18_BLOCKS):
    """Random, well-scaled weights: He-normal convs, BN gamma ~ U(0.3, 0.9), running var ~ U(0.1, 2).

    Small variances make an epsilon slip (Keras's default 1e-3 instead of 1e-5)
    move the logits well past the golden test's tolerance; the scales keep the
    logits of order 1, so float32 round-off stays far below it.
    """
    rng = np.random.RandomState(seed)
    state = {}
    for name, shape in resnet_state_dict_shapes(blocks).items():
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(rng.randint(0, 1000), dtype=np.int64)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.1, 2.0, shape)
        elif name.endswith(("running_mean", ".bias")):
            state[name] = rng.normal(0.0, 0.2, shape)
        elif len(shape) == 1:  # batch-norm gamma
            state[name] = rng.uniform(0.3, 0.9, shape)
        else:  # conv (gain 2 for the ReLU) or fc (gain 1) weight; fan_in = all but dimension 0
            gain = 1.0 if name.startswith("fc.") else 2.0
            state[name] = rng.normal(0.0, 1.0, shape) * np.sqrt(gain / np.prod(shape[1:]))
    return {name: value.astype(np.float32) if value.dtype == np.float64 else value
            for name, value in state.items()}


def weights_checksum(state):
    """Sum of |values| over every float tensor: detects a changed random stream."""
    return float(sum(np.abs(v.astype(np.float64)).sum() for v in state.values() if v.dtype.kind == "f"))
