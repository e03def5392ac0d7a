"""fp32 batched matmul of two activations, any sizes: the attention's scores and context.

    out[b, i, n] = sum_k x[b, i, k] * y[b, k, n]        x (B, M, K), y (B, K, N), all symbolic

Attention multiplies per head: scores = q (heads, frames, d) @ k^T (heads, d, frames), context =
p (heads, frames, frames) @ v (heads, frames, d). Both are too small and too oddly shaped
(a symbolic N, or N = 36) for MetaSchedule's replays on symbolic shapes, which ran them at
about 55 GFLOP/s. Here each vector of L output columns is computed for a tile of R rows at a
time: per k, one vector of y is loaded and multiplied by R broadcast values of x into R
accumulators. When L does not divide N, the last vector overlaps the one before it (its
columns are computed twice, stored twice with the same values), so every load and store is a
full vector; N < L takes vectors of 4 the same way, N < 4 plain scalars.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.fp32_kernels import VectorUnit

NARROW = 4   # the lanes of the vectors used when N is below the unit's lanes


def batched_matmul_kernel(unit: VectorUnit) -> tirx.PrimFunc:
    """(x (B, M, K), y (B, K, N)) -> (B, M, N) float32."""
    lanes = unit.lanes
    tile_rows = min(8, unit.registers - 2)   # accumulators, beside one y vector and one x value

    @T.macro
    def tile(x, y, out, acc, b, first, count, col, width, depth):
        """`count` rows from `first`, one vector of `width` columns from `col`."""
        for r in T.unroll(count):
            acc[T.ramp(r * lanes, 1, width)] = T.broadcast(T.float32(0), width)
        for j in range(depth):
            for r in T.unroll(count):
                acc[T.ramp(r * lanes, 1, width)] = (
                    acc[T.ramp(r * lanes, 1, width)]
                    + T.broadcast(x[b, first + r, j], width)
                    * y.vload([b, j, col], f"float32x{width}"))
        for r in T.unroll(count):
            out.vstore([b, first + r, col], acc[T.ramp(r * lanes, 1, width)])

    @T.macro
    def column_vector(x, y, out, acc, b, rows, col, width, depth):
        for full in range(rows // tile_rows):
            tile(x, y, out, acc, b, full * tile_rows, tile_rows, col, width, depth)
        for row in range(rows // tile_rows * tile_rows, rows):
            tile(x, y, out, acc, b, row, 1, col, width, depth)

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, y_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        batch, rows, depth, n = T.int64(), T.int64(), T.int64(), T.int64()
        x = T.match_buffer(x_handle, (batch, rows, depth), "float32")
        y = T.match_buffer(y_handle, (batch, depth, n), "float32")
        out = T.match_buffer(out_handle, (batch, rows, n), "float32")
        acc = T.alloc_buffer((tile_rows * lanes,), "float32", scope="local")
        for b in range(batch):
            if n >= lanes:
                for block in range((n + lanes - 1) // lanes):
                    column_vector(x, y, out, acc, b, rows, T.min(block * lanes, n - lanes),
                                  lanes, depth)
            elif n >= NARROW:
                for block in range((n + NARROW - 1) // NARROW):
                    column_vector(x, y, out, acc, b, rows, T.min(block * NARROW, n - NARROW),
                                  NARROW, depth)
            else:
                for i, col in T.grid(rows, n):
                    out[b, i, col] = T.float32(0)
                    for j in range(depth):
                        out[b, i, col] = out[b, i, col] + x[b, i, j] * y[b, j, col]

    return kernel
