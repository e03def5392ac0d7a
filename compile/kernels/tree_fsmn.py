"""The decoder's FSMN over a prefix tree, reading each node's window through its index.

    rows (N, d) f32, index (U, K) int64, weight (K, 1, d) f32 (WIO, one channel per group):
        tree_fsmn      out (U, 1, d):  out[u, 0, c] = sum_k rows[index[u, k], c] * weight[k, 0, c]
        gather_abs_max out ():         max |rows[index[u, k], c]| over every u, k, c

what take(rows, index, axis=0) followed by a depthwise conv1d (or by abs and a max over every
axis) computes, without the (U, K, d) windows in between (2.9 MB for a 20 s utterance's 457
tree nodes, per decoder block). An index outside [0, N) is clipped into it, as take's
mode="clip" does. Sums run over k in order, as the legalized conv1d's do.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.im2col import OPAQUE


def tree_fsmn_kernel(dim: int, taps: int) -> tirx.PrimFunc:
    """(rows, index, weight) -> (U, 1, dim) f32; N and U symbolic."""

    @T.prim_func(private=True)
    def tree_fsmn(rows_handle: T.handle, index_handle: T.handle, weight_handle: T.handle,
                  out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        n, nodes = T.int64(), T.int64()
        rows = T.match_buffer(rows_handle, (n, dim), "float32")
        index = T.match_buffer(index_handle, (nodes, taps), "int64")
        weight = T.match_buffer(weight_handle, (taps, 1, dim), "float32")
        out = T.match_buffer(out_handle, (nodes, 1, dim), "float32")
        acc = T.alloc_buffer((dim,), "float32", scope="local")
        for u in range(nodes):
            for c in T.vectorized(dim):
                acc[c] = T.float32(0)
            for k in range(taps):
                for c in T.vectorized(dim):
                    acc[c] = acc[c] + rows[T.max(T.min(index[u, k], n - 1), 0), c] * weight[k, 0, c]
            for c in T.vectorized(dim):
                out[u, 0, c] = acc[c]

    return tree_fsmn


def gather_abs_max_kernel(dim: int, taps: int) -> tirx.PrimFunc:
    """(rows, index) -> () f32; N and U symbolic. Absolute values are >= 0, so the maxima
    start at 0 (what max over a non-empty set of them gives)."""

    @T.prim_func(private=True)
    def gather_abs_max(rows_handle: T.handle, index_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        n, nodes = T.int64(), T.int64()
        rows = T.match_buffer(rows_handle, (n, dim), "float32")
        index = T.match_buffer(index_handle, (nodes, taps), "int64")
        out = T.match_buffer(out_handle, (), "float32")
        peak = T.alloc_buffer((dim,), "float32", scope="local")
        for c in T.vectorized(dim):
            peak[c] = T.float32(0)
        for u, k in T.grid(nodes, taps):
            for c in T.vectorized(dim):
                peak[c] = T.max(peak[c], T.fabs(rows[T.max(T.min(index[u, k], n - 1), 0), c]))
        out[()] = T.float32(0)
        for c in range(dim):
            out[()] = T.max(out[()], peak[c])

    return gather_abs_max
