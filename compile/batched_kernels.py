"""fp32 batched matmul of two activations: the attention's scores and context.

    out[b, i, n] = sum_k x[b, i, k] * y[b, k, n]        x (B, M, K), y (B, K, N)

Attention multiplies per head: scores = q (heads, frames, d) @ k^T (heads, d, frames), context =
p (heads, frames, frames) @ v (heads, frames, d). Both are too small and too oddly shaped
(a symbolic N, or N = 36) for MetaSchedule's replays on symbolic shapes, which ran them at
about 55 GFLOP/s. Here a tile of R rows times a few column vectors is computed at a time: per
k, each vector of y is loaded once and multiplied by R broadcast values of x.

- N fixed (the context, N = d): the tile covers all N columns, as vectors of L lanes and one
  narrower vector for the rest (36 = 16 + 16 + 4): x is read once.
- N symbolic (the scores, N = frames): vectors of L, two per tile; when L does not divide N,
  the last vector overlaps the one before it (those columns are computed and stored twice,
  with the same values), so every load and store is a full vector. N < L takes vectors of 4
  the same way, N < 4 plain scalars.

Measured on this host, 1 thread (scores, context; the tuned replays took 80 and 83 us): the
encoder's (4 heads, 123 frames) 33 and 31 us; the decoder's cross-attention (10 hypotheses x 4
heads, 48 steps, 124 frames) 137 and 130 us. One vector per tile instead ran 43 and 51 us,
176 and 206 us.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.fp32_kernels import VectorUnit, multiply_add

NARROW = 4         # lanes of the vectors used when N is below the unit's lanes
PAIR = 2           # column vectors per tile when N is symbolic
MAX_ROWS = 8


def fixed_width_supported(unit: VectorUnit, n: int) -> bool:
    """Whether N = n can be covered by the unit's vectors plus one multiple of NARROW, with
    room for at least two rows of accumulators."""
    vectors = n // unit.lanes + (1 if n % unit.lanes else 0)
    return n % NARROW == 0 and 2 * vectors + vectors + 1 <= unit.registers


def batched_matmul_kernel(unit: VectorUnit, n: int | None = None) -> tirx.PrimFunc:
    """(x (B, M, K), y (B, K, N)) -> (B, M, N) float32: N = n fixed (see
    fixed_width_supported), or symbolic when n is None."""
    return _symbolic_width(unit) if n is None else _fixed_width(unit, n)


def _fixed_width(unit: VectorUnit, n: int) -> tirx.PrimFunc:
    lanes = unit.lanes
    full, rest = n // lanes, n % lanes
    vectors = full + (1 if rest else 0)
    tile_rows = min(MAX_ROWS, (unit.registers - vectors - 1) // vectors)

    @T.macro
    def tile(x, y, out, acc, tail, b, first, count, depth):
        """`count` rows from `first` times all n columns."""
        for i in T.unroll(count * full):
            acc[T.ramp(i * lanes, 1, lanes)] = T.broadcast(T.float32(0), lanes)
        if rest > 0:
            for r in T.unroll(count):
                tail[T.ramp(r * lanes, 1, rest)] = T.broadcast(T.float32(0), rest)
        for j in range(depth):
            for r in T.unroll(count):
                for v in T.unroll(full):
                    multiply_add(acc, (r * full + v) * lanes, lanes, x[b, first + r, j],
                                 y.vload([b, j, v * lanes], f"float32x{lanes}"))
                if rest > 0:
                    multiply_add(tail, r * lanes, rest, x[b, first + r, j],
                                 y.vload([b, j, full * lanes], f"float32x{rest}"))
        for r in T.unroll(count):
            for v in T.unroll(full):
                out.vstore([b, first + r, v * lanes], acc[T.ramp((r * full + v) * lanes, 1,
                                                                 lanes)])
            if rest > 0:
                out.vstore([b, first + r, full * lanes], tail[T.ramp(r * lanes, 1, rest)])

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, y_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        batch, rows, depth = T.int64(), T.int64(), T.int64()
        x = T.match_buffer(x_handle, (batch, rows, depth), "float32")
        y = T.match_buffer(y_handle, (batch, depth, n), "float32")
        out = T.match_buffer(out_handle, (batch, rows, n), "float32")
        acc = T.alloc_buffer((tile_rows * max(full, 1) * lanes,), "float32", scope="local")
        tail = T.alloc_buffer((tile_rows * lanes,), "float32", scope="local")
        for b in range(batch):
            for block in range(rows // tile_rows):
                tile(x, y, out, acc, tail, b, block * tile_rows, tile_rows, depth)
            for row in range(rows // tile_rows * tile_rows, rows):
                tile(x, y, out, acc, tail, b, row, 1, depth)

    return kernel


def _symbolic_width(unit: VectorUnit) -> tirx.PrimFunc:
    lanes = unit.lanes
    tile_rows = min(MAX_ROWS, (unit.registers - PAIR - 1) // PAIR)

    @T.macro
    def tile(x, y, out, acc, b, first, count, col0, col1, width, depth):
        """`count` rows from `first` times two vectors of `width` columns, at col0 and col1."""
        for i in T.unroll(count * PAIR):
            acc[T.ramp(i * lanes, 1, width)] = T.broadcast(T.float32(0), width)
        for j in range(depth):
            for r in T.unroll(count):
                multiply_add(acc, r * PAIR * lanes, width, x[b, first + r, j],
                             y.vload([b, j, col0], f"float32x{width}"))
                multiply_add(acc, (r * PAIR + 1) * lanes, width, x[b, first + r, j],
                             y.vload([b, j, col1], f"float32x{width}"))
        for r in T.unroll(count):
            out.vstore([b, first + r, col0], acc[T.ramp(r * PAIR * lanes, 1, width)])
            out.vstore([b, first + r, col1], acc[T.ramp((r * PAIR + 1) * lanes, 1, width)])

    @T.macro
    def column_pair(x, y, out, acc, b, rows, n, pair, width, depth):
        """Columns [pair * 2 * width, + 2 * width), each vector moved back to end by n."""
        col0 = T.min(pair * PAIR * width, n - width)
        col1 = T.min(pair * PAIR * width + width, n - width)
        for block in range(rows // tile_rows):
            tile(x, y, out, acc, b, block * tile_rows, tile_rows, col0, col1, width, depth)
        for row in range(rows // tile_rows * tile_rows, rows):
            tile(x, y, out, acc, b, row, 1, col0, col1, width, depth)

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, y_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        batch, rows, depth, n = T.int64(), T.int64(), T.int64(), T.int64()
        x = T.match_buffer(x_handle, (batch, rows, depth), "float32")
        y = T.match_buffer(y_handle, (batch, depth, n), "float32")
        out = T.match_buffer(out_handle, (batch, rows, n), "float32")
        acc = T.alloc_buffer((tile_rows * PAIR * lanes,), "float32", scope="local")
        for b in range(batch):
            if n >= lanes:
                for pair in range((n + PAIR * lanes - 1) // (PAIR * lanes)):
                    column_pair(x, y, out, acc, b, rows, n, pair, lanes, depth)
            elif n >= NARROW:
                for pair in range((n + PAIR * NARROW - 1) // (PAIR * NARROW)):
                    column_pair(x, y, out, acc, b, rows, n, pair, NARROW, depth)
            else:
                for i, col in T.grid(rows, n):
                    out[b, i, col] = T.float32(0)
                    for j in range(depth):
                        out[b, i, col] = out[b, i, col] + x[b, i, j] * y[b, j, col]

    return kernel
