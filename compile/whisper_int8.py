"""Post-training int8 weights for Whisper's linear layers (`tinyasr compile --int8`).

Every nn.Linear of the encoder and decoder blocks (the attention projections and the MLPs)
becomes compile/compressed_import.py's Int8Linear: int8 values with one fp32 scale per output
channel, scale = max |row| / 127 (symmetric, no data needed), so the exported graph shows the
pattern passes/int8_matmul.py turns into the int8 kernels, which also round each layer's input
to int8 per row at run time. The convolutions, LayerNorms, the position tables and the tied
token embedding (a gather as well as the logits' matmul) stay fp32.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tinyasr.compile.compressed_import import Int8Linear
from tinyasr.model.whisper.model import Whisper

LEVELS = 127.0     # symmetric int8: -127..127, as the SAN-M quantizer and the kernels use
TINY = 1e-12       # the scale of an all-zero row


def int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values int8 (N, K), scale fp32 (N,)) with values * scale[:, None] ~ weight."""
    scale = weight.abs().amax(dim=1).clamp(min=TINY) / LEVELS
    values = torch.round(weight / scale[:, None]).clamp(-LEVELS, LEVELS).to(torch.int8)
    return values, scale.to(torch.float32)


def quantize_linear_layers(model: Whisper) -> Whisper:
    """A copy of `model` whose block linear layers hold int8 weights (Int8Linear)."""
    model = copy.deepcopy(model)
    for blocks in (model.encoder.blocks, model.decoder.blocks):
        for name, module in list(blocks.named_modules()):
            if not isinstance(module, nn.Linear):
                continue
            values, scale = int8_per_channel(module.weight.detach())
            parent, _, attribute = name.rpartition(".")
            setattr(blocks.get_submodule(parent), attribute,
                    Int8Linear(values, scale, module.bias))
    return model.eval()
