"""In-place write of a decoder step's keys or values into its key/value cache.

    cache (batch, heads, slots, d_head) f32, positions (tokens,) int64,
    source (batch, heads, tokens, d_head) f32:   cache[b, h, positions[t], :] = source[b, h, t, :]

Run by call_tir_inplace (passes/cache_write.py): the cache is the step's own input and its
updated output, so a step moves only its tokens' rows (tokens x d_head per head: 1.5 KB a
layer for Whisper tiny.en's one token) instead of a copy of the whole cache (448 slots: 688 KB
per cache, 8 caches a step) that scatter_elements makes. A position outside the cache writes
nothing (torch's index_copy would raise; here no memory past the cache is touched).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.im2col import OPAQUE


def cache_write_kernel(heads: int, slots: int, d_head: int) -> tirx.PrimFunc:
    """(cache, positions, source) -> nothing: `cache` is written where `positions` say;
    batch and tokens symbolic."""

    @T.prim_func(private=True)
    def cache_write(cache_handle: T.handle, positions_handle: T.handle,
                    source_handle: T.handle):
        # opaque: FuseOps must not merge an in-place write into a neighbour's kernel
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        batch, tokens = T.int64(), T.int64()
        cache = T.match_buffer(cache_handle, (batch, heads, slots, d_head), "float32")
        positions = T.match_buffer(positions_handle, (tokens,), "int64")
        source = T.match_buffer(source_handle, (batch, heads, tokens, d_head), "float32")
        for b, h, t in T.grid(batch, heads, tokens):
            if positions[t] >= 0 and positions[t] < slots:
                for d in T.vectorized(d_head):
                    cache[b, h, positions[t], d] = source[b, h, t, d]

    return cache_write
