"""The three graphs a Whisper deployable runs, as `torch.export` programs.

    log_mel(signal (160 * frames + 480,)) -> (n_mels, frames)
        Whisper's log-mel front end (model/whisper/frontend.py) on the reflect-padded signal:
        the caller pads (model/whisper/audio.py `padded_signal`, a copy of samples, no
        arithmetic), the graph does the rest: scaling, framing, both DFT matmuls, power, mel,
        log10, the utterance-wide clamp and the scaling. `frames` (the utterance's log-mel
        frames, len // 160) is dynamic.
    encode(mel (1, n_mels, 2 * n_audio_ctx)) -> (encoded (1, n_audio_ctx, d),
                                                cross_k_0..L-1, cross_v_0..L-1)
        the encoder on one 30 s window and every decoder layer's cross-attention keys and
        values (1, heads, n_audio_ctx, d_head), computed once per window; static shapes.
    step(tokens (batch, t) int64, positions (t,) int64, self_k_0..L-1, self_v_0..L-1,
         cross_k_0..L-1, cross_v_0..L-1) -> (logits (batch, t, n_vocab), self_k', self_v')
        one decoder step against the fixed n_text_ctx-slot self-attention cache (model.py's
        Decoder.forward); `batch` (hypotheses) and `t` (tokens per step: 2 for the prompt, then
        1) are dynamic; the cross keys and values keep batch 1 and broadcast over hypotheses.
        Compiled, the step writes its tokens' keys and values into the self_k / self_v tensors
        it is given and returns those same tensors (passes/cache_write.py: no copy of the
        448-slot caches a step; deployable version 3): a runner may pass its own tensors to
        every step (the Python runner does: over RPC, a tensor passed in cannot be returned)
        or the returned ones (tinyasr-run), and copies a cache before a step if its old
        contents are still wanted (beam search's reorder makes new tensors anyway).

`export_graphs(model, cross_dtype=torch.float16)` (int8 builds for targets that widen float16 in
registers: whisper_deployable.half_cross_caches) makes encode return the cross keys and values as
float16 and step take them so, widening them to float32 where attention reads them
(passes/batched_matmul.py reads them as float16 there): a step reads 9 MB of them, not 18.

The DFT and mel matrices are registered as parameters so the importer keeps them as function
inputs: every tensor lands in the weights file and the library holds only code.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from tinyasr.compile.graphs import buffers_as_parameters
from tinyasr.model.whisper import frontend
from tinyasr.model.whisper.audio import HOP, PAD_SAMPLES
from tinyasr.model.whisper.model import Whisper

MIN_MEL_FRAMES = 1        # one hop of audio: the recognizer decodes anything from one hop up


class LogMelGraph(nn.Module):
    """frontend.log_mel after the padding, with its constants as parameters."""

    def __init__(self):
        super().__init__()
        cos, sin, filters = frontend._constants()
        self.cos = nn.Parameter(cos.clone(), requires_grad=False)
        self.sin = nn.Parameter(sin.clone(), requires_grad=False)
        self.filters = nn.Parameter(filters.clone(), requires_grad=False)

    def forward(self, signal: Tensor) -> Tensor:
        return frontend.log_mel_of_padded(signal, self.cos, self.sin, self.filters)


class EncodeGraph(nn.Module):
    """One window's log-mel -> encoder output and the decoder's cross-attention caches (as
    `cross_dtype`)."""

    def __init__(self, model: Whisper, cross_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cross_dtype = cross_dtype
        self.encoder = buffers_as_parameters(model.encoder)
        # only the cross-attention modules: export lifts every parameter of the graph's
        # modules, used or not, and the step function owns the rest of the decoder
        # ModuleList yields nn.Module, whose __getattr__ torch types as Tensor | Module
        self.cross = nn.ModuleList(_only_kv(block.cross_attn)  # pyright: ignore[reportArgumentType]
                                   for block in model.decoder.blocks)

    def forward(self, mel: Tensor) -> tuple[Tensor, ...]:
        encoded = self.encoder(mel)
        pairs = [cross.keys_values(encoded)  # pyright: ignore[reportCallIssue]  # see __init__
                 for cross in self.cross]
        return (encoded, *(k.to(self.cross_dtype) for k, _ in pairs),
                *(v.to(self.cross_dtype) for _, v in pairs))


def _only_kv(cross: nn.Module) -> nn.Module:
    """A shallow copy of a CrossAttention without its query and output projections (export
    lifts every parameter of a graph's modules, used or not)."""
    kept = copy.copy(cross)
    kept._modules = {"kv": cross.kv}  # pyright: ignore[reportAttributeAccessIssue]  # torch: Tensor | Module
    return kept


def _without_kv(decoder: nn.Module) -> nn.Module:
    """A copy of the decoder whose cross-attention modules lack the key/value projection,
    which `encode` runs (the weight tensors are shared with the model, not copied)."""
    decoder = copy.copy(decoder)
    decoder._modules = dict(decoder._modules)
    blocks = []
    for block in decoder.blocks:  # pyright: ignore[reportGeneralTypeIssues]  # torch: Tensor | Module
        block = copy.copy(block)
        block._modules = dict(block._modules)
        cross = copy.copy(block.cross_attn)
        cross._modules = {k: v for k, v in cross._modules.items() if k != "kv"}
        block._modules["cross_attn"] = cross
        blocks.append(block)
    decoder._modules["blocks"] = nn.ModuleList(blocks)
    return decoder


class StepGraph(nn.Module):
    """One decoder step with the caches as flat tensor arguments (the VM passes tensors)."""

    def __init__(self, model: Whisper):
        super().__init__()
        self.decoder = _without_kv(model.decoder)
        self.layers = model.dims.n_text_layers

    def forward(self, tokens: Tensor, positions: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
        n = self.layers
        self_k, self_v = caches[:n], caches[n:2 * n]
        # float32 already, or float16 widened (a no-op in the fp32 export)
        cross_k = [k.float() for k in caches[2 * n:3 * n]]
        cross_v = [v.float() for v in caches[3 * n:]]
        logits, self_k, self_v = self.decoder(tokens, positions, self_k, self_v, cross_k, cross_v)
        return (logits, *self_k, *self_v)


# The dynamic sizes of each graph: input -> {axis: what the size counts}.
SHAPE_VARIABLES: dict[str, dict[tuple[str, int], str]] = {
    "log_mel": {("signal", 0): "frames"},
    "encode": {},
    "step": {("tokens", 0): "batch", ("tokens", 1): "tokens", ("positions", 0): "tokens"},
}


def export_graphs(model: Whisper, cross_dtype: torch.dtype = torch.float32
                  ) -> dict[str, ExportedProgram]:
    """{"log_mel", "encode", "step"} exported, the cross-attention caches as `cross_dtype`;
    see the module docstring."""
    model = model.eval()
    dims = model.dims
    frames = Dim("frames", min=MIN_MEL_FRAMES)
    batch, tokens = Dim("batch", min=1, max=64), Dim("tokens", min=1, max=dims.n_text_ctx)
    head_dim = dims.d_model // dims.n_heads
    example_batch, example_tokens = 2, 3
    # distinct tensors: export would make one input of tensors passed twice
    caches = ([torch.zeros(example_batch, dims.n_heads, dims.n_text_ctx, head_dim)
               for _ in range(2 * dims.n_text_layers)]
              + [torch.zeros(1, dims.n_heads, dims.n_audio_ctx, head_dim, dtype=cross_dtype)
                 for _ in range(2 * dims.n_text_layers)])
    cache_shapes: list[Any] = ([{0: batch}] * (2 * dims.n_text_layers)
                               + [None] * (2 * dims.n_text_layers))
    with torch.no_grad():
        log_mel = torch.export.export(
            LogMelGraph(), (torch.zeros(HOP * 8 + PAD_SAMPLES),),
            dynamic_shapes=({0: HOP * frames + PAD_SAMPLES},))
        encode = torch.export.export(EncodeGraph(model, cross_dtype),
                                     (torch.zeros(1, dims.n_mels, model.n_frames),))
        step = torch.export.export(
            StepGraph(model),
            (torch.zeros(example_batch, example_tokens, dtype=torch.long),
             torch.arange(example_tokens), *caches),
            dynamic_shapes=({0: batch, 1: tokens}, {0: tokens}, tuple(cache_shapes)))
    return {"log_mel": log_mel, "encode": encode, "step": step}
