"""Post-training int8 quantization: finds the scales of the int8 scheme in
model/network/int8.py (weights per output channel, activations per tensor or per row), and
trains through the rounding where rounding alone costs too much.

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

import torch
from torch import nn
from torch.nn.utils import parametrize

from tinyasr.model.common.errors import InputError
from tinyasr.model.compression.prune import (
    FIRST_CONV,
    FineTuning,
    WeightMask,
    fine_tune,
    teacher_of,
)
from tinyasr.model.network.int8 import (
    INT8_MAX,
    Activations,
    Quantization,
    attach_input_quantizers,
    dequantize_per_channel,
    quantize_per_channel,
)
from tinyasr.model.network.san_m import AsrModel
from tinyasr.model.network.sparsity import BlockShape, prunable_layers
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training import distributed
from tinyasr.model.training.dataset.sources import Corpus
from tinyasr.model.training.train import collate


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



class FakeQuantizedWeight(nn.Module):
    """Parametrization: the weight as its int8 per-channel rounding, straight-through gradient."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        rounded = dequantize_per_channel(*quantize_per_channel(weight))
        return weight + (rounded - weight).detach()


def quantization_aware_fine_tune(model: AsrModel, tokenizer: Tokenizer,
                                 quantization: Quantization, corpus: Corpus,
                                 fine_tuning: FineTuning,
                                 context: distributed.Context | None = None,
                                 precision: torch.dtype | None = None) -> None:
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
        fine_tune(model, tokenizer, corpus, fine_tuning,
                  description="quantization-aware fine-tune", teacher=teacher, context=context,
                  precision=precision)
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
            for features, tokens in zip(fbanks, token_ids, strict=True):
                model.loss(*collate([features], [tokens]))
    finally:
        for handle in handles:
            handle.remove()
    quantization.input_scales = {name: max(peak, 1e-12) / INT8_MAX for name, peak in peaks.items()}
