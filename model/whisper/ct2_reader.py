"""Reader of CTranslate2's `model.bin`: the variables of a converted model as named fp32 tensors.

The file is little-endian and laid out as CTranslate2's model spec serializes it:

    uint32   binary version (this reader knows 1..6; Whisper converters write 6)
    string   spec name, e.g. "WhisperSpec"            (version >= 2)
    uint32   spec revision                            (version >= 2)
    uint32   number of variables, then for each:
        string   name, e.g. "encoder/layer_0/self_attention/linear_0/weight"
        uint8    rank, then rank x uint32 dimensions
        uint8    dtype id: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16   (version >= 4;
                 older files store the item size instead and uint32 the element count)
        uint32   byte count, then the raw data (C order)
    uint32   number of aliases, then (alias string, target string) pairs   (version >= 3)

A string is a uint16 length that counts a trailing NUL, then that many bytes. Aliases name one
variable twice (e.g. a decoder's tied output projection); they are resolved to the same tensor.
Quantized (int8/int16) weights would need their `_scale` variables; the Whisper files we read
are float16, so only float types are converted and an integer weight is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinyasr.model.common.errors import InputError

MAX_BINARY_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_OLD_ITEM_SIZES = {4: np.float32, 2: np.int16, 1: np.int8}


@dataclass
class Ct2Model:
    """A model.bin's contents: spec name and revision, and every variable (aliases included)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weight variables as fp32 torch tensors (float16 widens exactly). Integer scalars
        (rank 0: settings such as `encoder/num_heads`) are not weights and are left out; an
        integer array would be a quantized weight, which this reader does not dequantize."""
        out = {}
        for name, array in self.variables.items():
            if array.dtype.kind == "f":
                out[name] = torch.from_numpy(array.astype(np.float32))
            elif array.ndim > 0:
                raise InputError(f"{name}: {array.dtype} weight (quantized model); "
                                 "only float models are read")
        return out

    def setting(self, name: str) -> int:
        """An integer scalar such as `encoder/num_heads`."""
        array = self.variables.get(name)
        if array is None or array.ndim != 0:
            raise InputError(f"CTranslate2 model has no setting {name}")
        return int(array)


class _Cursor:
    """Reads values front to back from a bytes buffer, naming the file when it ends early."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.position = memoryview(data), path, 0

    def take(self, size: int) -> memoryview:
        if self.position + size > len(self.data):
            raise InputError(f"{self.path}: truncated CTranslate2 model (wanted {size} bytes "
                             f"at offset {self.position})")
        chunk = self.data[self.position:self.position + size]
        self.position += size
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        raw = bytes(self.take(self.unpack("H")))
        return raw.rstrip(b"\0").decode("utf-8")


def read_ct2_model(path: Path) -> Ct2Model:
    """Parses a CTranslate2 model.bin (or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise InputError(f"{path}: no CTranslate2 model.bin")
    cursor = _Cursor(path.read_bytes(), path)
    version = cursor.unpack("I")
    if not 1 <= version <= MAX_BINARY_VERSION:
        raise InputError(f"{path}: CTranslate2 binary version {version} is not supported")
    spec, revision = ("", 1) if version < 2 else (cursor.string(), cursor.unpack("I"))
    variables = {}
    for _ in range(cursor.unpack("I")):
        name, array = _read_variable(cursor, version)
        variables[name] = array
    if version >= 3:
        for _ in range(cursor.unpack("I")):
            alias, target = cursor.string(), cursor.string()
            if target in variables:
                variables[alias] = variables[target]
    return Ct2Model(spec, revision, variables)


def _read_variable(cursor: _Cursor, version: int) -> tuple[str, np.ndarray]:
    name = cursor.string()
    shape = tuple(cursor.unpack("I") for _ in range(cursor.unpack("B")))
    if version >= 4:
        type_id = cursor.unpack("B")
        if type_id not in _DTYPES:
            raise InputError(f"{cursor.path}: variable {name} has unknown dtype id {type_id}")
        dtype, num_bytes = np.dtype(_DTYPES[type_id]), cursor.unpack("I")
    else:
        item_size = cursor.unpack("B")
        dtype = np.dtype(_OLD_ITEM_SIZES[item_size])
        num_bytes = cursor.unpack("I") * item_size
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if num_bytes != expected:
        raise InputError(f"{cursor.path}: variable {name} has {num_bytes} bytes, "
                         f"its shape {shape} needs {expected}")
    array = np.frombuffer(cursor.take(num_bytes), dtype=dtype.newbyteorder("<"))
    return name, array.reshape(shape).astype(dtype)
