"""What the compiler imports: a model directory, or a compressed model file (.tac).

A compressed file loads as the reference runner's model (`load_compressed`: dequantized weights,
int8-rounded layer inputs), with one change: each int8 nn.Linear keeps its int8 values and
per-channel scales as parameters, computing `linear(x, float(values) * scale[:, None])`. The
exported graph then shows the pattern the Int8Matmul pass turns into int8 kernels, and the
weights file holds the int8 values instead of fp32 copies. Int8 convs and the embedding run
dequantized, as in the reference. BSR weights are imported dense (no sparse kernels yet).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from tinyasr.model.compressed import CompressedModel, load_compressed, read_compressed
from tinyasr.model.model_dir import load_model_dir
from tinyasr.model.quantize import Activations
from tinyasr.model.san_m import AsrModel
from tinyasr.model.tokenizer import Tokenizer


class Int8Linear(nn.Module):
    """nn.Linear on int8 weights (one fp32 scale per output channel)."""

    def __init__(self, values: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.values = nn.Parameter(values, requires_grad=False)
        self.scale = nn.Parameter(scale, requires_grad=False)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.values.float() * self.scale[:, None], self.bias)


def _int8_values(compressed: CompressedModel, name: str, scale: torch.Tensor) -> torch.Tensor:
    """A stored int8 weight, dense (BSR expanded): its dequantized form divided by the scales
    rounds back to the stored integers exactly."""
    return torch.round(compressed.dense_tensor(name) / scale[:, None]).to(torch.int8)


def load_for_compile(path: Path) -> tuple[AsrModel, Tokenizer]:
    """The model at `path` (directory or .tac file) as the compiler exports it."""
    path = Path(path)
    if not path.is_file():
        return load_model_dir(path)
    compressed = read_compressed(path)
    model, tokenizer = load_compressed(path)
    quantization = compressed.quantization()
    if quantization is None or quantization.activations != Activations.DYNAMIC:
        return model, tokenizer   # static input scales: not what the int8 kernels compute
    modules = dict(model.named_modules())
    for layer in quantization.layers:
        linear = modules[layer]
        if not isinstance(linear, nn.Linear):
            continue
        name = f"{layer}.weight"
        scale = torch.from_numpy(compressed.parts[name]["scale"].copy())
        replacement = Int8Linear(_int8_values(compressed, name, scale), scale, linear.bias)
        for hook in linear._forward_pre_hooks.values():   # the reference's input rounding
            replacement.register_forward_pre_hook(hook)
        parent, _, attribute = layer.rpartition(".")
        setattr(modules[parent], attribute, replacement)
    return model, tokenizer
