"""A (B, T, W) tensor's columns offset ... offset + H*E as H heads: (B, H, T, E).

    out[b, h, t, e] = x[b, t, offset + h * E + e]

The head split of attention's keys and values (reshape to (B, T, H, E), then the (0, 2, 1, 3)
permute), reading the columns of one part of a fused projection where they lie, so that a
split of that projection is never copied. One vector copy of E columns per (b, h, t). TVM's
default schedule of the same reshape + permute built the (B, T, H, E) intermediate and indexed
it with a division and a modulo per element.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.im2col import OPAQUE


def heads_kernel(width: int, offset: int, heads: int, head_dim: int,
                 out_dtype: str = "float32") -> tirx.PrimFunc:
    """(x (B, T, width) float32) -> (B, heads, T, head_dim) `out_dtype` (float32, or float16:
    Whisper's cross-attention caches in an int8 build), the heads of columns
    offset ... offset + heads * head_dim."""
    assert offset + heads * head_dim <= width

    @T.prim_func(private=True, s_tir=True)
    def kernel(x_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        batch, rows = T.int64(), T.int64()
        x = T.match_buffer(x_handle, (batch, rows, width), "float32")
        out = T.match_buffer(out_handle, (batch, heads, rows, head_dim), out_dtype)
        with T.sblock("root"):
            for b, h, t in T.grid(batch, heads, rows):
                for e in T.vectorized(head_dim):
                    out[b, h, t, e] = T.Cast(out_dtype, x[b, t, offset + h * head_dim + e])

    return kernel
