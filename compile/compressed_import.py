"""What the compiler imports: a model directory, or a compressed model file (.tac).

A compressed file loads as the reference runner's model (`load_compressed`: dequantized weights,
int8-rounded layer inputs), with one change: each nn.Linear whose stored weight the kernels can
use as it is keeps it as parameters, so the exported graph shows the pattern a pass turns into
kernels and the weights file holds what the .tac holds instead of fp32 copies:

    int8 dense   Int8Linear: int8 values + per-channel scales, `linear(x, float(values) * scale)`
                 (the Int8Matmul pass: int8 kernels); Int8Conv2d likewise for a Conv2d
                 (the Int8Conv2d pass: im2col + the same kernels)
    BSR          BsrLinear: the BSR arrays (fp32 or int8 values), densified by the custom op
                 `tinyasr::bsr_to_dense` (the BsrMatmul pass: BSR kernels, or a dense fallback
                 whose densified weight is computed once at compile time)

int8 layers are kept int8 only with dynamic activations (what the int8 kernels compute); with
static input scales they run dequantized, as do the depthwise FSMN convs and the embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tinyasr.model.common.errors import warn
from tinyasr.model.network.compressed import (
    CompressedModel,
    from_bsr,
    load_compressed,
    read_compressed,
)
from tinyasr.model.network.int8 import Activations
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.san_m import AsrModel
from tinyasr.model.network.tokenizer import Tokenizer


@torch.library.custom_op("tinyasr::bsr_to_dense", mutates_args=())
def bsr_to_dense(values: torch.Tensor, col_indices: torch.Tensor, row_pointers: torch.Tensor,
                 columns: int) -> torch.Tensor:
    """The dense (rows, columns) matrix of a BSR triple: one graph node the compiler recognises."""
    rows = (len(row_pointers) - 1) * values.shape[1]
    return torch.from_numpy(from_bsr(values.numpy(), col_indices.numpy(), row_pointers.numpy(),
                                     (rows, columns)))


@bsr_to_dense.register_fake
def _(values: torch.Tensor, col_indices: torch.Tensor, row_pointers: torch.Tensor,
      columns: int) -> torch.Tensor:
    return values.new_empty(((row_pointers.shape[0] - 1) * values.shape[1], columns))


def _linear(x: torch.Tensor, values: torch.Tensor, scale: torch.Tensor | None,
            bias: torch.Tensor | None) -> torch.Tensor:
    """linear(x, W): W = values (fp32), or int8 values times their per-channel scales."""
    weight = values if scale is None else values.float() * scale[:, None]
    return F.linear(x, weight, bias)


class Int8Linear(nn.Module):
    """nn.Linear on int8 weights (one fp32 scale per output channel)."""

    def __init__(self, values: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.values = nn.Parameter(values, requires_grad=False)
        self.scale = nn.Parameter(scale, requires_grad=False)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.values, self.scale, self.bias)


class _Int8Conv(nn.Module):
    """A convolution on int8 weights (one fp32 scale per output channel); `convolve` is
    torch's functional convolution of the layer's dimensions."""

    convolve: Callable[..., torch.Tensor]

    def __init__(self, values: torch.Tensor, scale: torch.Tensor, conv: nn.Module):
        super().__init__()
        self.values = nn.Parameter(values, requires_grad=False)
        self.scale = nn.Parameter(scale, requires_grad=False)
        self.bias, self.stride, self.padding = conv.bias, conv.stride, conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.values.float() * self.scale.reshape(-1, *[1] * (self.values.dim() - 1))
        return type(self).convolve(x, weight, self.bias, self.stride, self.padding)


class Int8Conv2d(_Int8Conv):
    """nn.Conv2d on int8 weights."""

    convolve = staticmethod(F.conv2d)


class Int8Conv1d(_Int8Conv):
    """nn.Conv1d on int8 weights."""

    convolve = staticmethod(F.conv1d)


class BsrLinear(nn.Module):
    """nn.Linear on a BSR weight: values (nnz, R, C) fp32 or int8 (then with per-channel
    scales), col_indices (uint8 when they fit, else int32), row_pointers int32."""

    def __init__(self, parts: dict[str, np.ndarray], columns: int, bias: torch.Tensor | None):
        super().__init__()
        indices = parts["col_indices"]
        arrays = {"values": parts["values"], "row_pointers": parts["row_pointers"],
                  "col_indices": indices if indices.dtype == np.uint8 else indices.astype(np.int32)}
        for name, array in arrays.items():
            self.register_parameter(name, nn.Parameter(torch.from_numpy(array.copy()),
                                                       requires_grad=False))
        self.scale = (nn.Parameter(torch.from_numpy(parts["scale"].copy()), requires_grad=False)
                      if "scale" in parts else None)
        self.columns, self.bias = columns, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = bsr_to_dense(self.values, self.col_indices, self.row_pointers, self.columns)
        return _linear(x, values, self.scale, self.bias)


def _int8_values(compressed: CompressedModel, name: str, scale: torch.Tensor) -> torch.Tensor:
    """A stored int8 weight, dense: its dequantized form divided by the scales rounds back to
    the stored integers exactly."""
    weight = compressed.dense_tensor(name)
    return torch.round(weight / scale.reshape(-1, *[1] * (weight.dim() - 1))).to(torch.int8)


def _kernel_layer(compressed: CompressedModel, name: str, layer: nn.Module) -> nn.Module | None:
    """The module computing `layer` from its stored weight `name` as the kernels take it, or
    None when that is the plain fp32 layer."""
    entry, parts = compressed.header["tensors"][name], compressed.parts[name]
    if isinstance(layer, nn.Linear) and entry["layout"] == "bsr":
        return BsrLinear(parts, layer.in_features, layer.bias)
    if entry["encoding"] != "int8" or entry["layout"] == "bsr":
        return None
    scale = torch.from_numpy(parts["scale"].copy())
    if isinstance(layer, nn.Linear):
        return Int8Linear(_int8_values(compressed, name, scale), scale, layer.bias)
    if isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.dilation == (1, 1):
        return Int8Conv2d(_int8_values(compressed, name, scale), scale, layer)
    return None


def load_for_compile(path: Path) -> tuple[AsrModel, Tokenizer]:
    """The model at `path` (directory or .tac file) as the compiler exports it."""
    path = Path(path)
    if not path.is_file():
        return load_model_dir(path)
    compressed = read_compressed(path)
    model, tokenizer = load_compressed(path)
    quantization = compressed.quantization()
    int8_kernels = quantization is not None and quantization.activations == Activations.DYNAMIC
    if quantization is not None and not int8_kernels:
        warn(f"{path}: {quantization.activations.value} activations: its int8 layers compile "
             "dequantized (fp32 weights, no int8 kernels); quantize with --activations dynamic "
             "for int8 kernels")
    modules = dict(model.named_modules())
    for name, entry in compressed.header["tensors"].items():
        layer = name.removesuffix(".weight")
        module = modules.get(layer)
        if (not isinstance(module, (nn.Linear, nn.Conv2d))
                or (entry["encoding"] == "int8" and not int8_kernels)):
            continue
        replacement = _kernel_layer(compressed, name, module)
        if replacement is None:
            continue
        for hook in module._forward_pre_hooks.values():   # the reference's input rounding
            replacement.register_forward_pre_hook(hook)
        parent, _, attribute = layer.rpartition(".")
        setattr(modules[parent], attribute, replacement)
    return model, tokenizer
