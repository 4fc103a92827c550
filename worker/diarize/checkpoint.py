"""Read a PyTorch checkpoint's tensors as numpy arrays, without torch.

A torch checkpoint is a pickle whose tensors point at raw storages by "persistent id". Two
layouts exist: the zip format (torch >= 1.6: `*/data.pkl` plus one `*/data/<key>` entry per
storage) and the legacy format (a magic number, a protocol version and system info pickled in
sequence, then the object pickle, the storage keys, and each storage's bytes). Both are read
by a restricted unpickler: `find_class` admits only the handful of names a state dict needs, so
loading a checkpoint never runs arbitrary code.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""torch.serialization.MAGIC_NUMBER, the first pickle of a legacy-format file."""

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(ValueError):
    """The file is not a torch checkpoint this reader understands."""


@dataclass
class _Storage:
    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray[Any, Any] | None = None


@dataclass
class _LazyTensor:
    """A tensor whose storage bytes come later in a legacy file."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def resolve(self) -> np.ndarray[Any, Any]:
        if self.storage.data is None:
            raise CheckpointError("a tensor refers to a storage the file does not contain")
        flat = self.storage.data
        item = flat.itemsize
        if not self.shape:
            return np.array(flat[self.offset])
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view)


@dataclass
class _StorageType:
    name: str


def _rebuild_tensor(
    storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _LazyTensor:
    return _LazyTensor(storage, int(offset), tuple(shape), tuple(stride))


def _rebuild_parameter(tensor: _LazyTensor, *_: Any) -> _LazyTensor:
    return tensor


@dataclass
class _Unpickler(pickle.Unpickler):
    """Maps torch's tensor and storage names to the placeholders above, refuses all others."""

    file: IO[bytes]
    storages: dict[str, _Storage] = field(default_factory=dict)
    zip_reader: zipfile.ZipFile | None = None
    zip_prefix: str = ""

    def __post_init__(self) -> None:
        super().__init__(self.file)

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(f"the checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unexpected storage type {storage_type!r}")
        if key not in self.storages:
            storage = _Storage(_STORAGE_DTYPES[storage_type.name], numel)
            if self.zip_reader is not None:
                raw = self.zip_reader.read(f"{self.zip_prefix}data/{key}")
                storage.data = np.frombuffer(raw, dtype=storage.dtype, count=numel)
            self.storages[key] = storage
        return self.storages[key]


def _resolve(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.resolve()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError("a zip checkpoint has exactly one data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        unpickler = _Unpickler(
            io.BytesIO(archive.read(pickles[0])), zip_reader=archive, zip_prefix=prefix
        )
        return _resolve(unpickler.load())


def _load_legacy(path: Path) -> Any:
    with path.open("rb") as f:
        header = _Unpickler(f)
        if header.load() != LEGACY_MAGIC:
            raise CheckpointError("not a torch checkpoint (wrong magic number)")
        header.load()  # protocol version
        header.load()  # system info (endianness, type sizes)
        body = _Unpickler(f)
        result = body.load()
        keys = _Unpickler(f, storages=body.storages).load()
        for key in keys:
            storage = body.storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * storage.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise CheckpointError("the checkpoint is truncated")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
        return _resolve(result)


def load_checkpoint(path: Path) -> Any:
    """The checkpoint's object tree with every tensor as a numpy array."""
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc}") from exc


def state_dict(path: Path, key: str | None = None) -> dict[str, np.ndarray[Any, Any]]:
    """The named arrays of a checkpoint (under `key`, such as "model_state", if given)."""
    tree = load_checkpoint(path)
    if key is not None:
        if not isinstance(tree, dict) or key not in tree:
            raise CheckpointError(f"the checkpoint has no {key!r} entry")
        tree = tree[key]
    if not isinstance(tree, dict):
        raise CheckpointError("the checkpoint is not a state dict")
    return {str(k): v for k, v in tree.items() if isinstance(v, np.ndarray)}
