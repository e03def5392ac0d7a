"""Post-training int8 weights for Whisper's linear layers (`tinyasr compile --int8`).

Every nn.Linear of the encoder and decoder blocks (the attention projections and the MLPs)
becomes compile/compressed_import.py's Int8Linear: int8 values with one fp32 scale per output
channel, scale = max |row| / 127 (symmetric, no data needed), so the exported graph shows the
pattern passes/int8_matmul.py turns into the int8 kernels, which also round each layer's input
to int8 per row at run time. The tied token embedding (`quantize_whisper`) becomes
Int8Embedding: int8 values with one fp32 scale per EMBEDDING_GROUP columns of each token row
(max |group| / 127), read by both its uses: the gather dequantizes the rows it takes, and the
logits multiply the fp32 activations by the int8 rows group by group, each group's sum scaled
(passes/tied_matmul.py: compile/kernels/rowdot.py's int8 kernel; with AVX-512 VNNI the
activations are rounded to int8 per group too, the sums run on vpdpbusd). Stored once, a
quarter of the fp32 matrix's 80 MB to read each decoder step, which had been half of an int8
step's time. One scale per whole row had cost a word on real speech (tiny.en: WER 11.29 ->
12.37 %), groups of 128 columns keep fp32's transcripts (see README). The encoder's two
convolutions become compressed_import.Int8Conv1d (int8 per output channel over its C x K
inputs; passes/int8_conv1d.py rounds each output frame's inputs per row, as for the linear
layers). The LayerNorms and the position tables stay fp32.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tinyasr.compile.compressed_import import Int8Conv1d, Int8Linear
from tinyasr.model.whisper.model import Whisper

LEVELS = 127.0     # symmetric int8: -127..127, as the SAN-M quantizer and the kernels use
TINY = 1e-12       # the scale of an all-zero row
# columns per scale of the int8 token embedding: with one scale per row of 384 a token row's
# few large values coarsened all its others; 128 (3 scales a row of tiny.en, 0.6 MB more than
# one per row) kept fp32's transcripts
EMBEDDING_GROUP = 128


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


def quantize_convolutions(model: Whisper) -> Whisper:
    """`model` (changed in place) with int8 front convolutions (Int8Conv1d, one scale per
    output channel)."""
    for name in ("conv1", "conv2"):
        conv = getattr(model.encoder, name)
        weight = conv.weight.detach()
        values, scale = int8_per_channel(weight.reshape(weight.shape[0], -1))
        setattr(model.encoder, name, Int8Conv1d(values.reshape(weight.shape), scale, conv))
    return model


def embedding_group(k: int) -> int:
    """Columns per scale for a token embedding of width k: EMBEDDING_GROUP where it divides k,
    else the whole row."""
    return EMBEDDING_GROUP if k % EMBEDDING_GROUP == 0 else k


def int8_per_group(weight: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values int8 (N, K), scale fp32 (N, K / group)): int8_per_channel's rule for each run
    of `group` columns of a row (group divides K)."""
    n, k = weight.shape
    values, scale = int8_per_channel(weight.reshape(n * k // group, group))
    return values.reshape(n, k), scale.reshape(n, k // group)


class Int8Embedding(nn.Module):
    """A tied token embedding as int8 rows with one fp32 scale per run of columns
    (int8_per_group; values (N, K), scale (N, G), K / G columns a group): forward(tokens)
    gathers and dequantizes rows (what nn.Embedding returns), logits(x) is x against the
    dequantized rows, the form passes/tied_matmul.py gives to the int8 row-dot kernel (which
    scales each group's sum instead of each weight: the same up to fp32 rounding)."""

    def __init__(self, values: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.values = nn.Parameter(values, requires_grad=False)
        self.scale = nn.Parameter(scale, requires_grad=False)

    def _grouped(self, values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """int8 values (..., K) with their scales (..., G) -> fp32 (..., K)."""
        groups = scale.shape[-1]
        split = values.to(torch.float32).reshape(*values.shape[:-1], groups, -1)
        return (split * scale[..., None]).reshape(values.shape)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._grouped(F.embedding(tokens, self.values), F.embedding(tokens, self.scale))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._grouped(self.values, self.scale).t()


def quantize_whisper(model: Whisper) -> Whisper:
    """`tinyasr compile --int8`: a copy of `model` with int8 block linear layers
    (quantize_linear_layers), int8 front convolutions (quantize_convolutions) and an int8 tied
    token embedding (Int8Embedding, scales per embedding_group columns)."""
    model = quantize_convolutions(quantize_linear_layers(model))
    weight = model.decoder.embed_tokens.weight.detach()
    values, scale = int8_per_group(weight, embedding_group(weight.shape[1]))
    # an nn.Module where Decoder declares nn.Embedding: Int8Embedding has its call and the
    # logits(x) that model.tied_logits asks for
    model.decoder.embed_tokens = Int8Embedding(  # pyright: ignore[reportAttributeAccessIssue]
        values, scale)
    return model.eval()
