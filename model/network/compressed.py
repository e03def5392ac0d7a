"""The compressed model file: what ships to boards, what `tinyasr compile` imports, and whose
byte size is the size we report.

One file, little-endian throughout:

    offset 0   8 bytes   magic b"TINYASR\\x00"
    offset 8   uint32    format version (1)
    offset 12  uint32    H, the header's length in bytes
    offset 16  H bytes   header: UTF-8 JSON (below)
    then       zero bytes up to the next multiple of ALIGN (16): the data section starts there
    data       every tensor part at its "offset" (relative to the data section; each a multiple
               of ALIGN), "nbytes" long, C order; zero bytes between parts

Header:
    {"sha256": HEX,                              # first key: sha256 of the whole file with these
                                                 # 64 characters as "0"s (absent in older files)
     "format": "tinyasr-compressed", "version": 1,
     "config": {...ModelConfig...},              # layer_map follows from the *_layers/_distinct
     "tokens": ["<blank>", "<unk>", ..., "<sos/eos>"],
     "activations": "static" | "dynamic" | "none" | null,   # null: no int8 layers
     "tensors": {STATE_DICT_NAME: TENSOR, ...}}

There is one TENSOR per entry of AsrModel.state_dict(): shared blocks are one entry (the encoder
holds `encoder_distinct` blocks, position i runs block `i * distinct // layers`), the CMVN is
`cmvn.mean` / `cmvn.istd`. A TENSOR is

    {"shape": [out, ...],              # the weight's own shape (linear, conv, embedding, ...)
     "encoding": "float32" | "int8",   # int8: symmetric per output channel, w = values * scale[out]
     "layout": "dense" | "bsr",
     "block": [R, C],                  # bsr only
     "activations": "static" | "dynamic" | "none",  # int8 only: how the layer's input is rounded
     "input_scale": s,                 # static only: x_int8 = clamp(round(x / s), -127, 127)
     "parts": {PART: {"dtype": ..., "shape": [...], "offset": ..., "nbytes": ...}, ...}}

Parts:
    values        dense: the tensor (float32 or int8), its own shape
                  bsr: (nnz_blocks, R, C) nonzero blocks in row-major block order
    col_indices   bsr: (nnz_blocks,) each block's column in blocks: uint8 when the matrix has
                  at most 256 block columns, else uint16 (widen on load if a kernel wants int32)
    row_pointers  bsr: (out / R + 1,) int32, CSR-style pointers into the blocks per block row
    scale         int8: (out,) float32 per output channel
A bsr tensor is the matrix (out, prod(shape[1:])) (a conv's weight flattened to out x in*kernel)
cut into R x C blocks; R divides out and C divides the columns. A weight is stored as bsr only
when that is smaller than dense. Dynamic activations round each row (the last dimension of a
linear layer's input) at max|row| / 127, and a conv's whole input at max|x| / 127.

`load_compressed` is the PyTorch reference runner: it dequantizes the weights into an AsrModel
and rounds each int8 layer's input as the integer kernels do, so `Recognizer` and `evaluate`
measure exactly what ships.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasr.model.common.atomic import atomic_file
from tinyasr.model.common.errors import InputError
from tinyasr.model.network.int8 import (
    Activations,
    Quantization,
    attach_input_quantizers,
    dequantize_per_channel,
    quantize_per_channel,
)
from tinyasr.model.network.san_m import AsrModel, ModelConfig
from tinyasr.model.network.sparsity import BlockShape, prunable_layers
from tinyasr.model.network.tokenizer import Tokenizer

MAGIC = b"TINYASR\x00"
FORMAT_VERSION = 1
PREFIX = struct.Struct("<8sII")   # magic, version, header length
ALIGN = 16
SUFFIX = ".tac"                   # tinyasr compressed


def aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def to_bsr(matrix: np.ndarray, block: BlockShape) -> dict[str, np.ndarray]:
    """values (nnz_blocks, R, C), col_indices (uint8/uint16), row_pointers int32 of a matrix."""
    rows, cols = matrix.shape
    blocks = matrix.reshape(rows // block.rows, block.rows, cols // block.cols, block.cols)
    blocks = blocks.transpose(0, 2, 1, 3)                  # (block rows, block cols, R, C)
    nonzero = blocks.any(axis=(2, 3))
    block_rows, block_cols = np.nonzero(nonzero)
    counts = np.bincount(block_rows, minlength=nonzero.shape[0])
    return {"values": np.ascontiguousarray(blocks[nonzero]),
            "col_indices": block_cols.astype(np.uint8 if nonzero.shape[1] <= 256 else np.uint16),
            "row_pointers": np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)}


def from_bsr(values: np.ndarray, col_indices: np.ndarray, row_pointers: np.ndarray,
             shape: tuple[int, int]) -> np.ndarray:
    """The dense 2-D matrix of a BSR triple."""
    block_rows_count, block_r, block_c = len(row_pointers) - 1, *values.shape[1:]
    blocks = np.zeros((block_rows_count, shape[1] // block_c, block_r, block_c), values.dtype)
    block_rows = np.repeat(np.arange(block_rows_count), np.diff(row_pointers))
    blocks[block_rows, col_indices] = values
    return blocks.transpose(0, 2, 1, 3).reshape(shape)


def encode_tensor(tensor: torch.Tensor, int8: bool, block: BlockShape | None
                  ) -> tuple[dict, dict[str, np.ndarray]]:
    """One state-dict tensor as its header entry (without parts) and its part arrays."""
    entry: dict = {"shape": list(tensor.shape), "encoding": "int8" if int8 else "float32",
                   "layout": "dense"}
    parts: dict[str, np.ndarray] = {}
    if int8:
        values, scale = quantize_per_channel(tensor)
        values, parts["scale"] = values.numpy(), scale.numpy().astype(np.float32)
    else:
        values = tensor.detach().float().numpy()
    parts["values"] = values
    if block is not None:
        sparse = to_bsr(values.reshape(values.shape[0], -1), block)
        if sum(a.nbytes for a in sparse.values()) < values.nbytes:
            entry.update(layout="bsr", block=[block.rows, block.cols])
            parts.update(sparse)
    return entry, parts


def write_compressed(path: Path, model: AsrModel, tokenizer: Tokenizer,
                     block: BlockShape | None = None,
                     quantization: Quantization | None = None) -> int:
    """Writes the model (weights as they are: pruned zeros become BSR when `block` is given;
    `quantization.layers` become int8) atomically to `path`; returns its size in bytes."""
    modules = dict(model.named_modules())
    int8_weights = {f"{name}.weight": name
                    for name in (quantization.layers if quantization else [])}
    sparse_weights = ({f"{name}.weight" for name in prunable_layers(model, block)}
                      if block else set())
    tensors, blobs, offset = {}, [], 0
    for name, tensor in model.state_dict().items():
        entry, parts = encode_tensor(tensor, name in int8_weights,
                                     block if name in sparse_weights else None)
        if quantization is not None and name in int8_weights:
            layer = int8_weights[name]
            mode = quantization.input_mode(layer, modules[layer])
            entry["activations"] = mode.value
            if mode == Activations.STATIC:
                entry["input_scale"] = quantization.input_scales[layer]
        entry["parts"] = {}
        for part, array in parts.items():
            offset = aligned(offset)
            entry["parts"][part] = {"dtype": array.dtype.name, "shape": list(array.shape),
                                    "offset": offset, "nbytes": array.nbytes}
            blobs.append((offset, array))
            offset += array.nbytes
        tensors[name] = entry
    header = json.dumps({"sha256": _UNSET_DIGEST, "format": "tinyasr-compressed",
                         "version": FORMAT_VERSION,
                         "config": model.config.to_dict(), "tokens": tokenizer.tokens,
                         "activations": quantization.activations.value if quantization else None,
                         "tensors": tensors}, ensure_ascii=False, separators=(",", ":")).encode()
    data_start = aligned(PREFIX.size + len(header))
    content = bytearray(PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header)
    for part_offset, array in blobs:
        content += b"\0" * (data_start + part_offset - len(content))
        content += array.tobytes()
    digest_at = PREFIX.size + len(_DIGEST_KEY)
    content[digest_at:digest_at + 64] = hashlib.sha256(content).hexdigest().encode()
    with atomic_file(path) as handle:
        handle.write(content)
    return len(content)


@dataclass
class CompressedModel:
    """A compressed file as read: its header and every part as a numpy array."""

    header: dict
    config: ModelConfig
    tokenizer: Tokenizer
    parts: dict[str, dict[str, np.ndarray]]   # tensor name -> part name -> array
    data_start: int

    def quantization(self) -> Quantization | None:
        if self.header["activations"] is None:
            return None
        int8 = {name.removesuffix(".weight"): entry
                for name, entry in self.header["tensors"].items()
                if entry["encoding"] == "int8"}
        return Quantization(Activations(self.header["activations"]), list(int8),
                            {layer: entry["input_scale"] for layer, entry in int8.items()
                             if "input_scale" in entry})

    def dense_tensor(self, name: str) -> torch.Tensor:
        """A tensor as fp32, dense and dequantized: the weights the int8 kernels compute with."""
        entry, parts = self.header["tensors"][name], self.parts[name]
        values = parts["values"]
        if entry["layout"] == "bsr":
            rows = entry["shape"][0]
            values = from_bsr(values, parts["col_indices"], parts["row_pointers"],
                              (rows, math.prod(entry["shape"]) // rows))
        tensor = torch.from_numpy(values.reshape(entry["shape"]).copy())
        if entry["encoding"] == "int8":
            return dequantize_per_channel(tensor, torch.from_numpy(parts["scale"].copy()))
        return tensor


def read_compressed(path: Path) -> CompressedModel:
    """Reads and checks a compressed file; anything else is a one-line InputError.

    Every header field is checked against the config's model before any tensor is built:
    names and shapes as AsrModel's state dict, each part's dtype, shape, offset and size as its
    tensor needs and inside the file. Then the checksum is verified when the header has one
    (files written before it was added have none)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such compressed model file")
    data = path.read_bytes()
    if len(data) < PREFIX.size or data[:len(MAGIC)] != MAGIC:
        raise InputError(f"{path}: not a tinyasr compressed model (bad magic)")
    _, version, header_length = PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise InputError(f"{path}: compressed format version {version}, this tinyasr reads "
                         f"{FORMAT_VERSION}")
    if PREFIX.size + header_length > len(data):
        raise InputError(f"{path}: corrupt compressed model (header of {header_length} bytes "
                         "runs past the end of the file)")
    try:
        header = json.loads(data[PREFIX.size:PREFIX.size + header_length])
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        config = ModelConfig.from_dict(header["config"])
        tokenizer = Tokenizer(header["tokens"])
        if len(tokenizer) != config.vocab_size:
            raise ValueError(f"{len(tokenizer)} tokens for a vocab_size of {config.vocab_size}")
        if header["activations"] not in (None, *(mode.value for mode in Activations)):
            raise ValueError(f"unknown activations {header['activations']!r}")
        data_start = aligned(PREFIX.size + header_length)
        parts = _read_parts(header["tensors"], *_state_shapes(config, tokenizer), data,
                            data_start)
        compressed = CompressedModel(header, config, tokenizer, parts, data_start)
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: corrupt compressed model ({_reason(error)})") from None
    _verify_checksum(path, data)   # after the checks above, whose messages say more
    return compressed


_DIGEST_KEY = b'{"sha256":"'
_UNSET_DIGEST = "0" * 64
_DTYPES = {"float32", "int8", "uint8", "uint16", "int32"}


def _reason(error: Exception) -> str:
    """An exception as a short reason: a KeyError names the missing key."""
    return f"no {error.args[0]!r} field" if isinstance(error, KeyError) else str(error)


def _verify_checksum(path: Path, data: bytes) -> None:
    """A header starting with {"sha256":"<64 hex>" holds the sha256 of the whole file with
    those 64 characters as zeros; a file whose bytes changed since it was written fails it."""
    at = PREFIX.size + len(_DIGEST_KEY)
    if data[PREFIX.size:at] != _DIGEST_KEY:
        return
    recorded = data[at:at + 64]
    actual = hashlib.sha256(data[:at] + _UNSET_DIGEST.encode() + data[at + 64:]).hexdigest()
    if recorded.decode("ascii", "replace") != actual:
        raise InputError(f"{path}: corrupt compressed model (sha256 mismatch: the file changed "
                         "after it was written)")


def _state_shapes(config: ModelConfig, tokenizer: Tokenizer
                  ) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Every state-dict entry's shape for this config, and the entries that may be int8 (the
    weights of linear, conv and embedding layers). The model is built for real (ModelConfig
    bounds its size): on the meta device, random init costs seconds of torch imports."""
    model = AsrModel(config, tokenizer.sos_eos)
    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)
    int8 = {f"{name}.weight" for name, module in model.named_modules()
            if isinstance(module, layers)}
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}, int8


def _int_list(value: object, what: str) -> list[int]:
    if (not isinstance(value, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)):
        raise ValueError(f"{what} must be a list of non-negative integers, not {value!r}")
    return value


def _expected_parts(name: str, entry: dict, shape: tuple[int, ...]) -> dict[str, tuple]:
    """Part name -> (allowed dtypes, shape or None when its first axis is the block count) for
    a tensor entry, after checking the entry's own fields."""
    if not isinstance(entry, dict):
        raise ValueError(f"tensor {name} is not a JSON object")
    if tuple(_int_list(entry["shape"], f"tensor {name} shape")) != shape:
        raise ValueError(f"tensor {name} has shape {entry['shape']}, the config's model has "
                         f"{list(shape)}")
    encoding, layout = entry["encoding"], entry["layout"]
    if encoding not in ("float32", "int8") or layout not in ("dense", "bsr"):
        raise ValueError(f"tensor {name}: unknown encoding {encoding!r} or layout {layout!r}")
    rows = shape[0] if shape else 1
    expected: dict[str, tuple] = {}
    if layout == "dense":
        expected["values"] = ({encoding}, shape)
    else:
        block = _int_list(entry["block"], f"tensor {name} block")
        columns = math.prod(shape) // rows if rows else 0
        if (len(shape) < 2 or len(block) != 2 or 0 in block
                or rows % block[0] or columns % block[1]):
            raise ValueError(f"tensor {name}: block {block} does not tile its {rows} x "
                             f"{columns} matrix")
        expected["values"] = ({encoding}, None)
        expected["col_indices"] = ({"uint8", "uint16"}, None)
        expected["row_pointers"] = ({"int32"}, (rows // block[0] + 1,))
    if encoding == "int8":
        expected["scale"] = ({"float32"}, (rows,))
        mode = entry["activations"]
        if mode not in (a.value for a in Activations):
            raise ValueError(f"tensor {name}: unknown activations {mode!r}")
        if mode == Activations.STATIC.value:
            scale = entry["input_scale"]
            if (isinstance(scale, bool) or not isinstance(scale, (int, float))
                    or not 0 < scale < math.inf):
                raise ValueError(f"tensor {name}: input_scale {scale!r} is not a positive number")
    return expected


def _read_parts(tensors: object, shapes: dict[str, tuple[int, ...]], int8: set[str],
                data: bytes, data_start: int) -> dict[str, dict[str, np.ndarray]]:
    """Every tensor's parts as arrays viewing `data`, each checked against what its tensor
    needs (ValueError naming the first that is not)."""
    if not isinstance(tensors, dict):
        raise ValueError(f"'tensors' must be a JSON object, not {type(tensors).__name__}")
    if set(tensors) != set(shapes):
        missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
        raise ValueError(f"tensors do not match the config's model (missing {missing[:3]}, "
                         f"unexpected {extra[:3]})")
    parts: dict[str, dict[str, np.ndarray]] = {}
    for name, entry in tensors.items():
        expected = _expected_parts(name, entry, shapes[name])
        if entry["encoding"] == "int8" and name not in int8:
            raise ValueError(f"tensor {name}: only layer weights may be int8")
        stored = entry["parts"]
        if not isinstance(stored, dict) or set(stored) != set(expected):
            raise ValueError(f"tensor {name} has parts "
                             f"{sorted(stored) if isinstance(stored, dict) else stored!r}, "
                             f"expected {sorted(expected)}")
        parts[name] = {}
        for part, (dtypes, shape) in expected.items():
            info = stored[part]
            where = f"tensor {name} part {part}"
            if not isinstance(info, dict) or info["dtype"] not in dtypes & _DTYPES:
                raise ValueError(f"{where}: dtype must be one of {sorted(dtypes)}")
            dims = tuple(_int_list(info["shape"], f"{where} shape"))
            if shape is not None and dims != shape:
                raise ValueError(f"{where} has shape {list(dims)}, expected {list(shape)}")
            offset, nbytes = info["offset"], info["nbytes"]
            itemsize = np.dtype(info["dtype"]).itemsize
            if (not isinstance(offset, int) or not isinstance(nbytes, int) or offset < 0
                    or nbytes != math.prod(dims) * itemsize):
                raise ValueError(f"{where}: offset {offset!r} / nbytes {nbytes!r} do not fit "
                                 f"its shape {list(dims)}")
            if data_start + offset + nbytes > len(data):
                raise ValueError(f"tensor {name} runs past the end of the file")
            parts[name][part] = np.frombuffer(data, np.dtype(info["dtype"]), math.prod(dims),
                                              data_start + offset).reshape(dims)
        if entry["layout"] == "bsr":
            _check_bsr(name, parts[name], entry)
    return parts


def _check_bsr(name: str, parts: dict[str, np.ndarray], entry: dict) -> None:
    """A BSR triple that from_bsr can expand: block shape as declared, one column index per
    block and inside the matrix, row pointers from 0 rising to the block count."""
    values, columns, pointers = parts["values"], parts["col_indices"], parts["row_pointers"]
    block = tuple(entry["block"])
    rows = entry["shape"][0]
    block_columns = math.prod(entry["shape"]) // rows // block[1]
    if values.ndim != 3 or values.shape[1:] != block or columns.shape != values.shape[:1]:
        raise ValueError(f"tensor {name}: BSR values {list(values.shape)} and col_indices "
                         f"{list(columns.shape)} do not agree with block {list(block)}")
    if (pointers[0] != 0 or pointers[-1] != len(values) or np.any(np.diff(pointers) < 0)
            or np.any(columns >= block_columns)):
        raise ValueError(f"tensor {name}: BSR indices out of range")
    block_rows = np.repeat(np.arange(len(pointers) - 1), np.diff(pointers))
    if len(np.unique(block_rows.astype(np.int64) * block_columns + columns)) != len(values):
        raise ValueError(f"tensor {name}: BSR block stored twice")


def size_breakdown(compressed: CompressedModel) -> dict[str, int]:
    """Bytes of the file by kind: header (prefix, JSON, alignment), fp32 and int8 weight values,
    per-channel scales, BSR indices, and alignment padding between parts; they sum to the size."""
    sizes = {"header": compressed.data_start, "float32 values": 0, "int8 values": 0,
             "scales": 0, "sparse indices": 0, "padding": 0}
    end = 0
    for entry in compressed.header["tensors"].values():
        for part, info in entry["parts"].items():
            kind = {"values": f"{info['dtype']} values", "scale": "scales"}.get(part,
                                                                             "sparse indices")
            sizes[kind] += info["nbytes"]
            sizes["padding"] += info["offset"] - end
            end = info["offset"] + info["nbytes"]
    return sizes


def load_compressed(path: Path) -> tuple[AsrModel, Tokenizer]:
    """The reference runner: an AsrModel (eval mode) computing what the shipped file computes."""
    compressed = read_compressed(path)
    tokenizer = compressed.tokenizer
    model = AsrModel(compressed.config, tokenizer.sos_eos)
    try:
        model.load_state_dict({name: compressed.dense_tensor(name)
                               for name in compressed.header["tensors"]})
    except (RuntimeError, ValueError, KeyError, IndexError) as error:
        raise InputError(f"{path}: corrupt compressed model ({error})") from None
    quantization = compressed.quantization()
    if quantization is not None:
        attach_input_quantizers(model, quantization)
    return model.eval(), tokenizer
