"""How an int8 network computes, shared by the quantizer, the `.tac` loader and the compiler.

Weights: symmetric int8 per output channel (a row of `sparsity.weight_matrix`), scale =
max|w| / 127, q = round(w / scale) in [-127, 127]. The input of every int8 layer is rounded to
int8 too, at a recorded per-layer scale (static) or a per-row scale found at run time (dynamic),
or left fp32 (none: weight-only int8). A layer computes y = (x_q @ w_q^T) * (s_x * s_w) + b; its
int32 sums stay below 2^24 here (127^2 * 576 terms), where fp32 is exact, so rounding in fp32
(`InputQuantizer`) gives what an integer kernel gives, to fp32 rounding of the final rescale.
How the scales are found is model/compression/quantize.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tinyasr.model.network.sparsity import weight_matrix

INT8_MAX = 127


class Activations(str, Enum):
    STATIC = "static"
    DYNAMIC = "dynamic"
    NONE = "none"


@dataclass
class Quantization:
    """Which layers have int8 weights, and how their inputs are quantized."""

    activations: Activations
    layers: list[str]                                            # module names
    input_scales: dict[str, float] = field(default_factory=dict)   # static activations only

    def input_mode(self, layer: str, module: nn.Module) -> Activations:
        """How this layer's input is quantized (a lookup table has no input to quantize)."""
        return Activations.NONE if isinstance(module, nn.Embedding) else self.activations

    def to_dict(self) -> dict:
        return {"activations": self.activations.value, "layers": self.layers,
                "input_scales": self.input_scales}


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 values (weight's shape) and fp32 scales, one per output channel (dim 0)."""
    matrix = weight_matrix(weight.detach().float())
    peak = matrix.abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / INT8_MAX, torch.ones_like(peak))
    values = torch.clamp(torch.round(matrix / scale[:, None]), -INT8_MAX, INT8_MAX)
    return values.to(torch.int8).reshape(weight.shape), scale


def dequantize_per_channel(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return values.float() * scale.reshape(-1, *[1] * (values.dim() - 1))


def fake_quantize(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    return torch.clamp(torch.round(x / scale), -INT8_MAX, INT8_MAX) * scale


class InputQuantizer:
    """Forward pre-hook rounding a layer's input to int8 at a static or a per-row scale."""

    def __init__(self, mode: Activations, scale: float | None, per_row: bool):
        self.mode, self.scale, self.per_row = mode, scale, per_row

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if self.mode == Activations.STATIC:
            assert self.scale is not None, "a static input quantizer has its scale"
            scale = self.scale
        else:
            peak = x.abs().amax(dim=-1, keepdim=True) if self.per_row else x.abs().amax()
            scale = peak.detach().clamp(min=1e-12) / INT8_MAX
        rounded = fake_quantize(x, scale)
        if torch.is_grad_enabled():                  # training: straight-through gradient
            rounded = x + (rounded - x).detach()
        return (rounded, *args[1:])


def attach_input_quantizers(model: nn.Module,
                            quantization: Quantization) -> list[RemovableHandle]:
    """Makes every int8 layer of `model` see int8-rounded inputs, as the shipped kernels do."""
    modules = dict(model.named_modules())
    handles = []
    for name in quantization.layers:
        module = modules[name]
        mode = quantization.input_mode(name, module)
        if mode != Activations.NONE:
            handles.append(module.register_forward_pre_hook(InputQuantizer(
                mode, quantization.input_scales.get(name), per_row=isinstance(module, nn.Linear))))
    return handles
