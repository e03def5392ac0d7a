"""Whisper's encoder and decoder (Radford et al. 2022), written for export.

Encoder: log-mel (batch, 80, 3000) -> two GELU convolutions (the second halves time: 1500
frames of 20 ms) -> plus a fixed sinusoidal position table -> pre-norm Transformer blocks ->
final LayerNorm -> (batch, 1500, d). Whisper always encodes a whole 30 s window, so every
shape here is static.

Decoder: token embeddings plus learned positions -> pre-norm blocks of causal self-attention,
cross-attention to the encoder output and an MLP -> final LayerNorm -> logits against the token
embedding matrix (tied output layer).

The decoder runs one step (or a prompt of a few tokens) at a time against a key/value cache of
fixed size: per layer, head-split self-attention keys and values for all `n_text_ctx` (448)
slots, written at the step's positions with `index_copy`, and read under a mask
`slot <= position`, so slots not yet written never count. The cross-attention keys and values
are computed once per window (`cross_cache`). Nothing in `forward` branches on tensor values,
so `torch.export` takes the encoder and a decoder step as they are (the step's only dynamic size
is its number of tokens; tests/test_whisper.py exports both).

Linear layers keep CTranslate2's fusions (one query/key/value projection for self-attention,
one key/value projection for cross-attention); Whisper has no key bias, so the fused bias is
zero in the key third.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyasr.model.whisper.dims import WhisperDims

LAYER_NORM_EPS = 1e-5
Caches = tuple[Tensor, ...]          # one tensor per decoder layer


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(batch, time, d) -> (batch, heads, time, d / heads)."""
    batch, time, dim = x.shape
    return x.view(batch, time, heads, dim // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(batch, heads, time, d_head) -> (batch, time, heads * d_head)."""
    batch, heads, time, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, time, heads * d_head)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention on head-split (batch, heads, time, d_head) tensors, back to
    (batch, time, d); `mask` (tq, tk) is True where a query may look."""
    scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return merge_heads(torch.softmax(scores, dim=-1) @ v)


class Mlp(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SelfAttention(nn.Module):
    """Fused query/key/value projection, then attention and the output projection."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Head-split queries, keys and values."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(attend(*self.project(x)))


class CrossAttention(nn.Module):
    """Queries from the decoder, keys and values (one fused projection) from the encoder."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def keys_values(self, encoded: Tensor) -> tuple[Tensor, Tensor]:
        """Head-split keys and values of the encoder output, computed once per window."""
        k, v = self.kv(encoded).chunk(2, dim=-1)
        return split_heads(k, self.heads).contiguous(), split_heads(v, self.heads).contiguous()

    def forward(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.out(attend(split_heads(self.query(x), self.heads), k, v))


class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.attn = SelfAttention(d_model, heads)
        self.mlp_ln = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class Encoder(nn.Module):
    """(batch, n_mels, 2 * n_audio_ctx) log-mel -> (batch, n_audio_ctx, d_model)."""

    def __init__(self, dims: WhisperDims):
        super().__init__()
        self.conv1 = nn.Conv1d(dims.n_mels, dims.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.d_model, dims.d_model, kernel_size=3, stride=2, padding=1)
        self.positions: Tensor   # a buffer
        self.register_buffer("positions", torch.zeros(dims.n_audio_ctx, dims.d_model))
        self.blocks = nn.ModuleList(EncoderBlock(dims.d_model, dims.n_heads)
                                    for _ in range(dims.n_audio_layers))
        self.ln_post = nn.LayerNorm(dims.d_model, eps=LAYER_NORM_EPS)

    def forward(self, mel: Tensor) -> Tensor:
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class DecoderBlock(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.attn = SelfAttention(d_model, heads)
        self.cross_attn_ln = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.cross_attn = CrossAttention(d_model, heads)
        self.mlp_ln = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(d_model)

    def forward(self, x: Tensor, positions: Tensor, mask: Tensor, self_k: Tensor,
                self_v: Tensor, cross_k: Tensor, cross_v: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """One block on the new tokens x (batch, t, d) at `positions` (t,); self_k/self_v are
        this block's caches (batch, heads, max_positions, d_head), returned with the new keys
        and values written; cross_k/cross_v (batch, heads, frames, d_head)."""
        q, k, v = self.attn.project(self.attn_ln(x))
        self_k = self_k.index_copy(2, positions, k)
        self_v = self_v.index_copy(2, positions, v)
        x = x + self.attn.out(attend(q, self_k, self_v, mask))
        x = x + self.cross_attn(self.cross_attn_ln(x), cross_k, cross_v)
        return x + self.mlp(self.mlp_ln(x)), self_k, self_v


class Decoder(nn.Module):
    """Token ids at given positions + caches -> logits over the vocabulary + updated caches.

    Caches are tuples with one tensor per layer, head-split: self_k, self_v (batch, heads,
    n_text_ctx, d_head) and cross_k, cross_v (batch, heads, n_audio_ctx, d_head)."""

    def __init__(self, dims: WhisperDims):
        super().__init__()
        self.dims = dims
        self.embed_tokens = nn.Embedding(dims.n_vocab, dims.d_model)
        self.positions = nn.Parameter(torch.zeros(dims.n_text_ctx, dims.d_model))
        self.blocks = nn.ModuleList(DecoderBlock(dims.d_model, dims.n_heads)
                                    for _ in range(dims.n_text_layers))
        self.ln = nn.LayerNorm(dims.d_model, eps=LAYER_NORM_EPS)

    def empty_self_cache(self, batch: int) -> tuple[Caches, Caches]:
        """Zeroed self-attention key and value caches for `batch` sequences."""
        dims = self.dims
        shape = (batch, dims.n_heads, dims.n_text_ctx, dims.d_model // dims.n_heads)
        zeros = tuple(torch.zeros(shape) for _ in range(dims.n_text_layers))
        return zeros, tuple(torch.zeros(shape) for _ in range(dims.n_text_layers))

    def cross_cache(self, encoded: Tensor) -> tuple[Caches, Caches]:
        """Every block's cross-attention keys and values for an encoder output, computed once
        per window."""
        # ModuleList yields nn.Module, whose __getattr__ torch types as Tensor | Module
        pairs = [block.cross_attn.keys_values(  # pyright: ignore[reportCallIssue, reportAttributeAccessIssue]
                     encoded)
                 for block in self.blocks]
        return tuple(k for k, _ in pairs), tuple(v for _, v in pairs)

    def forward(self, tokens: Tensor, positions: Tensor, self_k: Caches, self_v: Caches,
                cross_k: Caches, cross_v: Caches) -> tuple[Tensor, Caches, Caches]:
        """tokens (batch, t) at positions (t,) -> logits (batch, t, n_vocab), self_k, self_v."""
        slots = torch.arange(self.dims.n_text_ctx, device=tokens.device)
        mask = slots[None, :] <= positions[:, None]            # causal over the cache
        x = self.embed_tokens(tokens) + self.positions[positions]
        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, positions, mask, self_k[i], self_v[i], cross_k[i], cross_v[i])
            new_k.append(k)
            new_v.append(v)
        logits = tied_logits(self.embed_tokens, self.ln(x))
        return logits, tuple(new_k), tuple(new_v)


def tied_logits(embedding: nn.Module, x: Tensor) -> Tensor:
    """x against the token embedding, the tied output layer: x @ weight^T, or the embedding's
    own `logits(x)` when it stores its rows otherwise (compile/whisper_int8.py's int8 rows)."""
    if isinstance(embedding, nn.Embedding):
        return x @ embedding.weight.t()
    # nn.Module's __getattr__ is typed Tensor | Module: the method, as the int8 one declares it
    own = cast(Callable[[Tensor], Tensor], embedding.logits)
    return own(x)


class Whisper(nn.Module):
    """Encoder and decoder; see the module docstring."""

    def __init__(self, dims: WhisperDims):
        super().__init__()
        self.dims = dims
        self.encoder = Encoder(dims)
        self.decoder = Decoder(dims)

    @property
    def n_frames(self) -> int:
        """Log-mel frames per window (WhisperDims.n_frames)."""
        return self.dims.n_frames
