"""Read a torch `.pth` state dict into numpy arrays without torch and without running its code.

A `.pth` file is a pickle, and unpickling an untrusted pickle can run any
command. This reader unpickles with an allow-list: the only globals it resolves
are the handful a tensor state dict needs, each mapped to a function of ours;
any other global (`os.system`, `builtins.eval`, a torch module class...) raises
UnsafeCheckpointError before anything is called.

Both torch formats are read:
- zip (torch >= 1.6): `<prefix>/data.pkl` plus one raw little-endian file per
  storage, `<prefix>/data/<key>`;
- legacy: consecutive pickles (magic number, protocol, system info, the object,
  the storage keys), then each storage as an int64 element count and raw bytes.
"""

import collections
import io
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

# torch.<Name>Storage -> numpy dtype of its elements.
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(Exception):
    """The checkpoint asks for something a plain tensor state dict never needs."""


class CheckpointFormatError(Exception):
    """The file is not a readable torch checkpoint."""


class _StorageType:
    """Stands for torch.<Name>Storage inside the pickle: only its element dtype matters."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A flat typed buffer; legacy files fill it after the pickle that refers to it."""

    def __init__(self, dtype, numel, data=None):
        self.dtype = dtype
        self.numel = numel
        self.data = data


class _Tensor:
    """A strided view on a storage, materialised once every storage is read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self, source):
        storage = self.storage
        if storage.data is None or len(storage.data) != storage.numel:
            raise CheckpointFormatError(f"storage data missing or truncated in {source}")
        if any(s < 0 for s in self.size + self.stride) or len(self.size) != len(self.stride) \
                or self.offset < 0:
            raise CheckpointFormatError(f"invalid tensor layout in {source}")
        # Bounds check before as_strided, which would otherwise read arbitrary memory.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if 0 not in self.size and last >= storage.numel:
            raise CheckpointFormatError(f"tensor reads past the end of its storage in {source}")
        if 0 in self.size:
            return np.zeros(self.size, dtype=storage.dtype)
        view = np.lib.stride_tricks.as_strided(
            storage.data[self.offset:], shape=self.size,
            strides=[s * storage.dtype.itemsize for s in self.stride], writeable=False)
        return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise CheckpointFormatError("_rebuild_tensor_v2 called on something that is not a storage")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return data


def _allowed_globals():
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }
    for name in STORAGE_DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source, load_storage=None):
        super().__init__(file)
        self.source = source
        self.load_storage = load_storage

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"global '{module}.{name}' is not allowed in {self.source}: "
                "only tensor state dicts can be read") from None

    def persistent_load(self, pid):
        if self.load_storage is None or not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafeCheckpointError(f"unexpected persistent id {pid!r:.80} in {self.source}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"persistent id without a storage type in {self.source}")
        return self.load_storage(storage_type, *pid[2:])


def _to_state_dict(obj, source):
    if not isinstance(obj, dict) or not all(isinstance(v, _Tensor) for v in obj.values()):
        raise CheckpointFormatError(
            f"{source} does not hold a flat state dict of tensors (name -> tensor)")
    return {str(key): tensor.to_numpy(source) for key, tensor in obj.items()}


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointFormatError(f"{path}: expected one '<prefix>/data.pkl' in the zip")
        prefix = pickles[0][:-len("data.pkl")]
        byteorder_file = prefix + "byteorder"
        if byteorder_file in names and archive.read(byteorder_file).strip() != b"little":
            raise CheckpointFormatError(f"{path}: big-endian checkpoints are not supported")
        storages = {}

        def load_storage(storage_type, key, location, numel):
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise CheckpointFormatError(f"{path}: storage record {record!r} missing")
                data = np.frombuffer(archive.read(record), dtype=storage_type.dtype)
                storages[key] = _Storage(storage_type.dtype, len(data), data)
            return storages[key]

        unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path, load_storage)
        return _to_state_dict(unpickler.load(), path)


def _read_legacy(path):
    with open(path, "rb") as file:
        header = [_RestrictedUnpickler(file, path).load() for _ in range(3)]
        if header[0] != LEGACY_MAGIC_NUMBER:
            raise CheckpointFormatError(f"{path} is neither a torch zip nor a legacy torch checkpoint")
        storages = {}

        def load_storage(storage_type, key, location, numel, view_metadata):
            if view_metadata is not None:
                raise CheckpointFormatError(f"{path}: storage views are not supported")
            storages.setdefault(key, _Storage(storage_type.dtype, int(numel)))
            return storages[key]

        obj = _RestrictedUnpickler(file, path, load_storage).load()
        keys = _RestrictedUnpickler(file, path).load()
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", file.read(8))
            data = file.read(numel * storage.dtype.itemsize)
            storage.data = np.frombuffer(data, dtype=storage.dtype)
        return _to_state_dict(obj, path)


def read_torch_state_dict(path):
    """Tensor name -> numpy array, from a torch.save'd state dict (zip or legacy format)."""
    path = str(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, TypeError, ValueError) as error:
        raise CheckpointFormatError(f"cannot read {path} as a torch checkpoint: {error}") from error
