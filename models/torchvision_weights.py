"""Fill a backbone with weights from a torchvision checkpoint (.pth, .safetensors or .npz).

The backbone never knows where its weights came from: this module maps
torchvision state-dict names onto Keras layers by name (Keras '_' is
torchvision '.', see `models/resnet18_backbone.py`) and converts layouts:
convolutions OIHW -> HWIO, batch norms weight/bias/running_mean/running_var ->
gamma/beta/moving_mean/moving_variance. `num_batches_tracked` is ignored and
the checkpoint's 1000-class classifier (`fc.*`, AlexNet's `classifier.*`) is
never loaded: the study puts a new head on the body. A body cut short
(`omitted_modules`, e.g. layer4 of a stage-3 ResNet-18) skips those stages'
tensors the same way, so a full or the shared partial checkpoint fills it.

Modes:
- strict: every backbone tensor must be in the file, else one error lists them;
- partial: what is in the file is loaded, absent layers keep their fresh
  initialisation and are reported (they must train in every phase);
- auto: strict for .pth/.safetensors (a real checkpoint is complete), partial
  for .npz (the project's stand-in file `resnet18_imagenet_partial.npz`).
Unexpected keys, wrong shapes and half-present layers are errors in every mode.
"""

import dataclasses
import hashlib
import logging
import pathlib
import re

import keras
import numpy as np

from models.torch_checkpoint import read_torch_state_dict

MODES = ("auto", "strict", "partial")
IGNORED_SUFFIXES = ("num_batches_tracked",)
CLASSIFIER_PREFIXES = ("fc.", "classifier.")
BATCH_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")

log = logging.getLogger(__name__)


class CheckpointMismatchError(Exception):
    """The checkpoint's tensors do not fit the backbone (missing, unexpected or wrongly shaped keys)."""


@dataclasses.dataclass(frozen=True)
class WeightLoadReport:
    """What a weight load did; `description` is the sentence every result must quote."""

    source: str
    sha256: str
    mode: str
    loaded_keys: tuple
    skipped_keys: tuple
    fresh_layers: tuple
    description: str

    def summary(self):
        fresh = ", ".join(self.fresh_layers) or "none"
        return (f"weights: {self.description}\n  source: {self.source} (sha256 {self.sha256})\n"
                f"  mode: {self.mode}; loaded {len(self.loaded_keys)} tensors; "
                f"skipped {len(self.skipped_keys)} (classifier/bookkeeping/stages not in the body); initialised afresh: {fresh}")


def read_state_dict(path):
    """Tensor name -> float32 numpy array, from any supported checkpoint format."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".pth", ".pt"):
        state = read_torch_state_dict(path)
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file
        state = load_file(str(path))
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            state = {key: archive[key] for key in archive.files}
    else:
        raise ValueError(f"unsupported weights format {suffix!r} ({path}); "
                         "expected .pth, .pt, .safetensors or .npz")
    # Floats of any width (float16, bfloat16 too) become float32; counters stay integers.
    return {key: value if value.dtype.kind in "iub" else np.asarray(value, dtype=np.float32)
            for key, value in state.items()}


def _torch_module(layer):
    return layer.name.replace("_", ".")


def expected_tensors(backbone):
    """torchvision tensor name -> (Keras layer, weight index, torch shape) for every loadable weight."""
    expected = {}
    for layer in backbone.layers:
        module = _torch_module(layer)
        if isinstance(layer, keras.layers.Conv2D):
            height, width, inputs, outputs = layer.kernel.shape
            expected[f"{module}.weight"] = (layer, 0, (outputs, inputs, height, width))
            if layer.use_bias:
                expected[f"{module}.bias"] = (layer, 1, (outputs,))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for index, tensor in enumerate(BATCH_NORM_TENSORS):
                expected[f"{module}.{tensor}"] = (layer, index, tuple(layer.gamma.shape))
        elif layer.weights:
            raise TypeError(f"backbone layer {layer.name} ({type(layer).__name__}) has weights "
                            "this loader cannot map from torchvision")
    return expected


def _to_keras(array, torch_shape):
    return array.transpose(2, 3, 1, 0) if len(torch_shape) == 4 else array


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pretty_module(module):
    match = re.fullmatch(r"layer(\d+)", module)
    return f"stage-{match.group(1)}" if match else module


def _describe_parts(top_module, part_modules, all_modules):
    """Name some of one top module's layers the way a reader of the paper would."""
    def parts(modules):
        return {module.split(".", 1)[1] for module in modules}
    chosen, every = parts(part_modules), parts(all_modules)
    by_block = {}
    for part in every:
        by_block.setdefault(part.split(".")[0], set()).add(part)
    stage = _pretty_module(top_module)
    if chosen == {p for p in every if ".downsample." in f".{p}."}:
        return f"{stage} shortcut"
    if chosen == {p for p in every if re.fullmatch(r"\d+\.(conv|bn)\d", p)}:
        return f"{stage} 3x3 convs"
    blocks = sorted(b for b, members in by_block.items() if members <= chosen)
    if chosen == set().union(*(by_block[b] for b in blocks)):
        return f"{stage} block{'s' if len(blocks) > 1 else ''} {', '.join(blocks)}"
    return f"{stage} ({', '.join(sorted(chosen))})"


def describe_load(origin, layer_modules, fresh_modules, omitted_modules=()):
    """e.g. 'ImageNet, partial: conv1-layer3 + stage-4 shortcut; stage-4 3x3 convs random', or for a body
    cut after stage 3, 'ImageNet, full; stage-4 not in this body'."""
    cut = f"; {', '.join(_pretty_module(m) for m in omitted_modules)} not in this body" if omitted_modules else ""
    if not fresh_modules:
        return f"{origin}, full{cut}"
    top_modules = list(dict.fromkeys(module.split(".")[0] for module in layer_modules))
    loaded_parts, fresh_parts, run = [], [], []
    for top in top_modules + [None]:
        members = [m for m in layer_modules if m.split(".")[0] == top]
        fresh = [m for m in members if m in fresh_modules]
        if top is not None and not fresh:
            run.append(top)
            continue
        if run:
            loaded_parts.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run = []
        if top is None:
            break
        if len(fresh) == len(members):
            fresh_parts.append(_pretty_module(top))
        else:
            loaded_parts.append(_describe_parts(top, [m for m in members if m not in fresh], members))
            fresh_parts.append(_describe_parts(top, fresh, members))
    loaded = " + ".join(loaded_parts) or "nothing"
    return f"{origin}, partial: {loaded}; {', '.join(fresh_parts)} random{cut}"


def load_torchvision_weights(backbone, path, mode="auto", origin="ImageNet"):
    """Copy a torchvision checkpoint into a freshly built `backbone`; returns a WeightLoadReport.

    `origin` names what the checkpoint was trained on, for the report's description.
    Raises CheckpointMismatchError listing every offending key at once.
    """
    if mode not in MODES:
        raise ValueError(f"weights mode must be one of {MODES}, got {mode!r}")
    path = pathlib.Path(path)
    if mode == "auto":
        mode = "partial" if path.suffix.lower() == ".npz" else "strict"
    state = read_state_dict(path)
    expected = expected_tensors(backbone)

    # A body cut short (ResNet18Backbone(stages=3)) names the stages it leaves out; their tensors are skipped.
    omitted = tuple(getattr(backbone, "omitted_modules", ()))
    skipped = sorted(k for k in state
                     if k.endswith(IGNORED_SUFFIXES) or k.startswith(CLASSIFIER_PREFIXES)
                     or k.split(".")[0] in omitted)
    present = {k: v for k, v in state.items() if k not in skipped}
    unexpected = sorted(set(present) - set(expected))
    wrong_shape = sorted(f"{k}: file {tuple(v.shape)}, model {expected[k][2]}"
                         for k, v in present.items() if k in expected and tuple(v.shape) != expected[k][2])
    missing = sorted(set(expected) - set(present))

    keys_by_layer = {}
    for key, (layer, _, _) in expected.items():
        keys_by_layer.setdefault(layer.name, []).append(key)
    fresh_layers = [name for name, keys in keys_by_layer.items() if all(k in missing for k in keys)]
    incomplete = sorted(k for name, keys in keys_by_layer.items() if name not in fresh_layers
                        for k in keys if k in missing)

    problems = []
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if wrong_shape:
        problems.append(f"wrongly shaped keys: {wrong_shape}")
    if mode == "strict" and missing:
        problems.append(f"missing keys: {missing}")
    elif incomplete:
        problems.append(f"keys missing from partly present layers: {incomplete}")
    if problems:
        raise CheckpointMismatchError(
            f"{path} does not fit backbone {backbone.name!r} ({mode} mode): " + "; ".join(problems))

    weights_by_layer = {name: [w.numpy() for w in backbone.get_layer(name).weights]
                        for name in keys_by_layer if name not in fresh_layers}
    for key, array in present.items():
        layer, index, torch_shape = expected[key]
        weights_by_layer[layer.name][index] = _to_keras(array, torch_shape)
    for name, weights in weights_by_layer.items():
        backbone.get_layer(name).set_weights(weights)

    layer_modules = [_torch_module(backbone.get_layer(name)) for name in keys_by_layer]
    fresh_modules = {_torch_module(backbone.get_layer(name)) for name in fresh_layers}
    report = WeightLoadReport(
        source=str(path), sha256=file_sha256(path), mode=mode,
        loaded_keys=tuple(sorted(present)), skipped_keys=tuple(skipped),
        fresh_layers=tuple(fresh_layers),
        description=describe_load(origin, layer_modules, fresh_modules, omitted))
    if fresh_layers:
        log.warning("partial weight load: %s", report.summary())
    return report
