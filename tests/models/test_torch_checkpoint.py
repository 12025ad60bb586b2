"""The torch-free .pth reader: exact tensors from both torch formats, and no code execution."""

import os
import pickle
import zipfile

import numpy as np
import pytest

from models.torch_checkpoint import (CheckpointFormatError, UnsafeCheckpointError,
                                     read_torch_state_dict)
from tests.models.helpers import GOLDEN_DIR


class _RunsCommand:
    """Unpickling this with a plain pickle.load would run `command` in a shell."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _torch_zip(path, data_pkl, records=()):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        for name, payload in records:
            archive.writestr(f"archive/data/{name}", payload)
    return path


@pytest.mark.parametrize("checkpoint", ["tiny_state_dict.pth", "tiny_state_dict_legacy.pth"])
def test_reads_torch_saved_tensors_exactly(checkpoint):
    """Written by torch.save (tools/golden/make_golden.py): dtypes, a parameter, offset and strided views."""
    expected = np.load(GOLDEN_DIR / "tiny_state_dict.npz")
    state = read_torch_state_dict(GOLDEN_DIR / checkpoint)
    assert set(state) == set(expected.files)
    for name in expected.files:
        value = state[name].astype(np.float32) if name == "bfloat16" else state[name]
        assert value.dtype == expected[name].dtype, name
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    np.testing.assert_array_equal(state["offset_view"], state["base"][4:])
    assert state["transposed"].shape == (4, 3)


@pytest.mark.parametrize("container", ["pth_zip", "plain_pickle"])
def test_refuses_a_pickle_that_would_run_a_command_and_runs_nothing(tmp_path, container):
    marker = tmp_path / "command_ran"
    payload = pickle.dumps({"conv1.weight": _RunsCommand(f"touch {marker}")}, protocol=2)
    if container == "pth_zip":
        path = _torch_zip(tmp_path / "evil.pth", payload)
    else:
        path = tmp_path / "evil.pth"
        path.write_bytes(payload)

    with pytest.raises(UnsafeCheckpointError, match=r"global '(posix|os)\.system' is not allowed in .*evil\.pth"):
        read_torch_state_dict(path)
    assert not marker.exists(), "the pickled command was executed"


def test_refuses_a_whole_pickled_torch_module(tmp_path):
    """torch.save(model) pickles module classes: refused, only state dicts are accepted."""
    payload = b"\x80\x02ctorch.nn.modules.conv\nConv2d\n)\x81."
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.conv.Conv2d"):
        read_torch_state_dict(_torch_zip(tmp_path / "module.pth", payload))


def _state_dict_pickle(size, stride, offset=0):
    """A pickle as torch writes it: one float tensor on storage key '0' (built with the real opcodes)."""
    return (b"\x80\x02ccollections\nOrderedDict\n)R"  # OrderedDict()
            b"X\x01\x00\x00\x00w"  # key 'w'
            b"ctorch._utils\n_rebuild_tensor_v2\n("  # MARK: arguments follow
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
            + pickle.dumps(offset, protocol=2)[2:-1] + pickle.dumps(size, protocol=2)[2:-1]
            + pickle.dumps(stride, protocol=2)[2:-1]
            + b"\x89ccollections\nOrderedDict\n)RtRs.")


def test_handmade_state_dict_pickle_reads_with_strides(tmp_path):
    storage = np.arange(4, dtype=np.float32).tobytes()
    path = _torch_zip(tmp_path / "ok.pth", _state_dict_pickle((2, 2), (1, 2)), [("0", storage)])
    np.testing.assert_array_equal(read_torch_state_dict(path)["w"], [[0, 2], [1, 3]])


def test_refuses_a_tensor_view_reaching_past_its_storage(tmp_path):
    """Unchecked, such a view would make numpy read memory outside the file's data."""
    storage = np.arange(4, dtype=np.float32).tobytes()
    path = _torch_zip(tmp_path / "overrun.pth", _state_dict_pickle((2, 2), (1, 100)), [("0", storage)])
    with pytest.raises(CheckpointFormatError, match="past the end of its storage"):
        read_torch_state_dict(path)


def test_refuses_a_file_that_is_no_torch_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2) + b"junk")
    with pytest.raises(CheckpointFormatError, match="notes.pth"):
        read_torch_state_dict(path)
