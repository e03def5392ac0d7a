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
    {"format": "tinyasr-compressed", "version": 1,
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

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinyasr.model.atomic import atomic_file
from tinyasr.model.errors import InputError
from tinyasr.model.prune import BlockShape, prunable_layers
from tinyasr.model.quantize import (Activations, Quantization, attach_input_quantizers,
                                    dequantize_per_channel, quantize_per_channel)
from tinyasr.model.san_m import AsrModel, ModelConfig
from tinyasr.model.tokenizer import Tokenizer

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
    int8_weights = {f"{name}.weight": name for name in (quantization.layers if quantization else [])}
    sparse_weights = ({f"{name}.weight" for name in prunable_layers(model, block)}
                      if block else set())
    tensors, blobs, offset = {}, [], 0
    for name, tensor in model.state_dict().items():
        entry, parts = encode_tensor(tensor, name in int8_weights,
                                     block if name in sparse_weights else None)
        if name in int8_weights:
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
    header = json.dumps({"format": "tinyasr-compressed", "version": FORMAT_VERSION,
                         "config": model.config.to_dict(), "tokens": tokenizer.tokens,
                         "activations": quantization.activations.value if quantization else None,
                         "tensors": tensors}, ensure_ascii=False, separators=(",", ":")).encode()
    data_start = aligned(PREFIX.size + len(header))
    with atomic_file(path) as handle:
        handle.write(PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header)
        for part_offset, array in blobs:
            handle.write(b"\0" * (data_start + part_offset - handle.tell()))
            handle.write(array.tobytes())
    return Path(path).stat().st_size


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
        int8 = {name.removesuffix(".weight"): entry for name, entry in self.header["tensors"].items()
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
    """Reads and checks a compressed file; anything else is a one-line InputError."""
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
    try:
        header = json.loads(data[PREFIX.size:PREFIX.size + header_length])
        data_start = aligned(PREFIX.size + header_length)
        parts = {}
        for name, entry in header["tensors"].items():
            parts[name] = {}
            for part, info in entry["parts"].items():
                start = data_start + info["offset"]
                if start + info["nbytes"] > len(data):
                    raise ValueError(f"tensor {name} runs past the end of the file")
                parts[name][part] = np.frombuffer(data, np.dtype(info["dtype"]),
                                                  math.prod(info["shape"]), start
                                                  ).reshape(info["shape"])
        compressed = CompressedModel(header, ModelConfig.from_dict(header["config"]),
                                     Tokenizer(header["tokens"]), parts, data_start)
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: corrupt compressed model ({error})") from None
    return compressed


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
