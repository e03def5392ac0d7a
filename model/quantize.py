"""Post-training int8 quantization: weights per output channel, activations per tensor or per row.

Weights: symmetric int8 per output channel (a row of the weight matrix, see prune.weight_matrix):
scale = max|w| / 127, q = round(w / scale) in [-127, 127].

Activations, the input of every int8 layer, so that int8 x int8 -> int32 kernels can run it:
    static   one scale per layer input: max |x| over calibration utterances / 127 (recorded)
    dynamic  one scale per row (frame or token vector; per tensor for convs), found at run time
    none     weight-only int8; activations stay fp32
A layer computes y = (x_q @ w_q^T) * (s_x * s_w) + b. Its int32 sums stay below 2^24 here
(127^2 * 576 terms), where fp32 is exact, so fake quantization in fp32 (`InputQuantizer`) gives
what an integer kernel gives, to fp32 rounding of the final rescale.

Stay fp32, and why:
    the first conv      1 input channel, 9 weights per filter: int8 would save under 1 KB, and it
                        sees the CMVN'd features directly, where int8 steps cost the most
    LayerNorm, biases   tiny vectors (d_model each) that rescale everything downstream
    CMVN                the feature statistics
The token embedding is int8 per row (per token) but weight-only: it is a lookup, not a matmul.

Post-training quantization comes first; where it costs too much accuracy,
`quantization_aware_fine_tune` trains through the rounding (straight-through gradients).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle

from tinyasr.model.errors import InputError
from tinyasr.model.prune import (FIRST_CONV, BlockShape, FineTuning, WeightMask, fine_tune,
                                 prunable_layers, teacher_of, weight_matrix)
from tinyasr.model.san_m import AsrModel
from tinyasr.model.train import collate

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


def quantizable_layers(model: AsrModel, keep_fp32: Sequence[str] = ()) -> dict[str, nn.Module]:
    """Layers that get int8 weights: every Linear, Conv and Embedding but the first conv and
    `keep_fp32` (module names; unknown names are an error)."""
    candidates = {name: module for name, module in model.named_modules()
                  if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding))}
    unknown = set(keep_fp32) - set(candidates)
    if unknown:
        raise InputError(f"--keep-fp32: no such layer {sorted(unknown)[0]!r} "
                         f"(layers: {', '.join(candidates)})")
    excluded = {FIRST_CONV, *keep_fp32}
    return {name: module for name, module in candidates.items() if name not in excluded}


def fake_quantize(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    return torch.clamp(torch.round(x / scale), -INT8_MAX, INT8_MAX) * scale


class InputQuantizer:
    """Forward pre-hook rounding a layer's input to int8 at a static or a per-row scale."""

    def __init__(self, mode: Activations, scale: float | None, per_row: bool):
        self.mode, self.scale, self.per_row = mode, scale, per_row

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if self.mode == Activations.STATIC:
            scale = self.scale
        else:
            peak = x.abs().amax(dim=-1, keepdim=True) if self.per_row else x.abs().amax()
            scale = peak.detach().clamp(min=1e-12) / INT8_MAX
        rounded = fake_quantize(x, scale)
        if torch.is_grad_enabled():                  # training: straight-through gradient
            rounded = x + (rounded - x).detach()
        return (rounded, *args[1:])


def attach_input_quantizers(model: AsrModel,
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


class FakeQuantizedWeight(nn.Module):
    """Parametrization: the weight as its int8 per-channel rounding, straight-through gradient."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        rounded = dequantize_per_channel(*quantize_per_channel(weight))
        return weight + (rounded - weight).detach()


def quantization_aware_fine_tune(model: AsrModel, quantization: Quantization,
                                 fbanks: Sequence[torch.Tensor],
                                 token_ids: Sequence[list[int]],
                                 fine_tuning: FineTuning) -> None:
    """Fine-tunes with int8-rounded weights and layer inputs in the forward pass, so the weights
    adapt to the rounding. Zero weights (pruned) stay zero under masks; static input scales stay
    as calibrated. The weights left are fp32 whose int8 rounding is what was trained."""
    teacher = teacher_of(model, fine_tuning)
    layers = prunable_layers(model, BlockShape(1, 1))          # every Linear and Conv
    modules = dict(model.named_modules())
    for module in layers.values():
        parametrize.register_parametrization(module, "weight", WeightMask(module.weight != 0))
    for name in quantization.layers:
        parametrize.register_parametrization(modules[name], "weight", FakeQuantizedWeight())
    handles = attach_input_quantizers(model, quantization)
    try:
        fine_tune(model, fbanks, token_ids, fine_tuning, description="quantization-aware fine-tune",
                  teacher=teacher)
    finally:
        for handle in handles:
            handle.remove()
        for module in {*layers.values(), *(modules[name] for name in quantization.layers)}:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def calibrate(model: AsrModel, quantization: Quantization, fbanks: Sequence[torch.Tensor],
              token_ids: Sequence[list[int]]) -> None:
    """Static input scales: max |input| of each int8 layer over the calibration utterances,
    run one at a time (no padding) through encoder and teacher-forced decoder."""
    if not fbanks:
        raise InputError("calibration: no utterances to calibrate activation scales on")
    modules = dict(model.named_modules())
    peaks = {name: 0.0 for name in quantization.layers
             if quantization.input_mode(name, modules[name]) == Activations.STATIC}

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            peaks[name] = max(peaks[name], float(args[0].detach().abs().max()))
        return hook

    handles = [modules[name].register_forward_pre_hook(recorder(name)) for name in peaks]
    model.eval()
    try:
        with torch.no_grad():
            for features, tokens in zip(fbanks, token_ids):
                model.loss(*collate([features], [tokens]))
    finally:
        for handle in handles:
            handle.remove()
    quantization.input_scales = {name: max(peak, 1e-12) / INT8_MAX for name, peak in peaks.items()}
