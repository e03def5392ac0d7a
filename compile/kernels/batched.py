"""fp32 batched matmul of two activations: the fbank's per-group DFT, and an attention's scores
and context where compile/passes/fused_attention.py's pattern does not apply.

    out[b, i, n] = sum_k x[b, i, k] * y[b % G, k, n]        x (B, M, K), y (G, K, N)

Attention multiplies per head: scores = q (heads, frames, d) @ k^T (heads, d, frames), context =
p (heads, frames, frames) @ v (heads, frames, d). Both are too small and too oddly shaped
(a symbolic N, or N = 36) for MetaSchedule's replays on symbolic shapes, which ran them at
about 55 GFLOP/s. Here a tile of R rows times a few column vectors is computed at a time: per
k, each vector of y is loaded once and multiplied by R broadcast values of x.

y's batch G divides x's: in the decoder's cross-attention, the utterance's keys and values
(G = heads) are shared by every hypothesis (B = hypotheses x heads), read from one copy rather
than a broadcast one.

- N fixed (the context, N = d): the tile covers all N columns, as vectors of L lanes and one
  narrower vector for the rest (36 = 16 + 16 + 4): x is read once.
- N symbolic (the scores, N = frames): tiles of 4 rows x 4 vectors of L, row blocks outer,
  so the output is written in memory order; when the vectors do not divide N, the last ones
  are moved back to end at N (those columns are computed and stored twice, with the same
  values), so every load and store is a full vector. N < L takes vectors of 4 the same way,
  N < 4 plain scalars.

Measured with the inputs and output out of cache, as they come in a model (AMD Zen 4, 1 thread,
scores of 10 hypotheses x 4 heads, 63 steps, over 123 frames | 63 steps | the encoder's 4 heads
x 123 frames): 300 | 130 | 58 us; with 8 rows x 2 vectors, columns outer, 512 | 301 | 77 us
(both about 100 GFLOP/s with everything in cache). On the Rocket Lake host (2 vectors): the
encoder's scores and context 33 and 31 us, the decoder's cross-attention 137 and 130 us; one
vector per tile ran 43 and 51 us, 176 and 206 us.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import (
    NARROW,
    VectorUnit,
    halve_lanes,
    lane_sums_of_4,
    multiply_add,
)

GROUP = 4          # column vectors per tile when N is symbolic
MAX_ROWS = 8
GROUP_ROWS = 4     # rows per tile when N is symbolic (16 accumulators)


def fixed_width_supported(unit: VectorUnit, n: int) -> bool:
    """Whether N = n can be covered by the unit's vectors plus one multiple of NARROW, with
    room for at least two rows of accumulators."""
    vectors = n // unit.lanes + (1 if n % unit.lanes else 0)
    return n % NARROW == 0 and 2 * vectors + vectors + 1 <= unit.registers


def batched_matmul_kernel(unit: VectorUnit, n: int | None = None,
                          y_dtype: str = "float32") -> tirx.PrimFunc:
    """(x (B, M, K), y (G, K, N)) -> (B, M, N) float32, batch b times y's batch b % G (G = B,
    or G heads shared by B / G hypotheses): N = n fixed (see fixed_width_supported), or
    symbolic when n is None. y_dtype "float16" (N fixed only): y is read as float16 and
    widened in registers (see half_vector)."""
    if n is not None:
        return _fixed_width(unit, n, y_dtype)
    assert y_dtype == "float32", "float16 y needs a fixed N"
    return _symbolic_width(unit)


def half_vector(y, index: list, dtype: str, width: int) -> tirx.Expr:
    """`width` lanes of y from `index` as float32: loaded as they are, or float16 widened (the
    decoder's cross-attention keys and values stored as float16 halve the 18 MB of them a
    Whisper tiny.en step reads; F16C's vcvtph2ps on x86, fcvtl on AArch64)."""
    if dtype == "float32":
        return y.vload(index, f"float32x{width}")
    return T.Cast(f"float32x{width}", y.vload(index, f"{dtype}x{width}"))


def _fixed_width(unit: VectorUnit, n: int, y_dtype: str = "float32") -> tirx.PrimFunc:
    lanes = unit.lanes
    full, rest = n // lanes, n % lanes
    vectors = full + (1 if rest else 0)
    tile_rows = min(MAX_ROWS, (unit.registers - vectors - 1) // vectors)

    @T.macro
    def tile(x, y, out, acc, tail, b, g, first, count, depth):
        """`count` rows from `first` of batch b (y's batch g) times all n columns."""
        for i in T.unroll(count * full):
            acc[T.ramp(i * lanes, 1, lanes)] = T.broadcast(T.float32(0), lanes)
        if rest > 0:
            for r in T.unroll(count):
                tail[T.ramp(r * lanes, 1, rest)] = T.broadcast(T.float32(0), rest)
        for j in range(depth):
            for r in T.unroll(count):
                for v in T.unroll(full):
                    multiply_add(acc, (r * full + v) * lanes, lanes, x[b, first + r, j],
                                 half_vector(y, [g, j, v * lanes], y_dtype, lanes))
                if rest > 0:
                    multiply_add(tail, r * lanes, rest, x[b, first + r, j],
                                 half_vector(y, [g, j, full * lanes], y_dtype, rest))
        for r in T.unroll(count):
            for v in T.unroll(full):
                out.vstore([b, first + r, v * lanes], acc[T.ramp((r * full + v) * lanes, 1,
                                                                 lanes)])
            if rest > 0:
                out.vstore([b, first + r, full * lanes], tail[T.ramp(r * lanes, 1, rest)])

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, y_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        batch, groups, rows, depth = T.int64(), T.int64(), T.int64(), T.int64()
        x = T.match_buffer(x_handle, (batch, rows, depth), "float32")
        y = T.match_buffer(y_handle, (groups, depth, n), y_dtype)
        out = T.match_buffer(out_handle, (batch, rows, n), "float32")
        acc = T.alloc_buffer((tile_rows * max(full, 1) * lanes,), "float32", scope="local")
        tail = T.alloc_buffer((tile_rows * lanes,), "float32", scope="local")
        for b in range(batch):
            for block in range(rows // tile_rows):
                tile(x, y, out, acc, tail, b, b % groups, block * tile_rows, tile_rows, depth)
            for row in range(rows // tile_rows * tile_rows, rows):
                tile(x, y, out, acc, tail, b, b % groups, row, 1, depth)

    return kernel


def _symbolic_width(unit: VectorUnit) -> tirx.PrimFunc:
    lanes = unit.lanes
    tile_rows = min(GROUP_ROWS, (unit.registers - GROUP - 1) // GROUP)

    @T.macro
    def tile(x, y, out, acc, b, g, first, count, group, n, width, depth):
        """`count` rows from `first` times the group's GROUP vectors of `width` columns, each
        moved back to end by n."""
        for i in T.unroll(count * GROUP):
            acc[T.ramp(i * lanes, 1, width)] = T.broadcast(T.float32(0), width)
        for j in range(depth):
            for r in T.unroll(count):
                for v in T.unroll(GROUP):
                    multiply_add(acc, (r * GROUP + v) * lanes, width, x[b, first + r, j],
                                 y.vload([g, j, T.min((group * GROUP + v) * width, n - width)],
                                         f"float32x{width}"))
        for r in T.unroll(count):
            for v in T.unroll(GROUP):
                out.vstore([b, first + r, T.min((group * GROUP + v) * width, n - width)],
                           acc[T.ramp((r * GROUP + v) * lanes, 1, width)])

    @T.macro
    def row_blocks(x, y, out, acc, b, g, rows, n, column_groups, width, depth):
        """Row blocks outer, column groups inner: the output is written row block by row
        block, in the order memory holds it."""
        for block in range(rows // tile_rows):
            for group in range(column_groups):
                tile(x, y, out, acc, b, g, block * tile_rows, tile_rows, group, n, width, depth)
        for row in range(rows // tile_rows * tile_rows, rows):
            for group in range(column_groups):
                tile(x, y, out, acc, b, g, row, 1, group, n, width, depth)

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, y_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        batch, groups, rows, depth, n = T.int64(), T.int64(), T.int64(), T.int64(), T.int64()
        x = T.match_buffer(x_handle, (batch, rows, depth), "float32")
        y = T.match_buffer(y_handle, (groups, depth, n), "float32")
        out = T.match_buffer(out_handle, (batch, rows, n), "float32")
        acc = T.alloc_buffer((tile_rows * GROUP * lanes,), "float32", scope="local")
        for b in range(batch):
            if n >= lanes:
                row_blocks(x, y, out, acc, b, b % groups, rows, n,
                           (n + GROUP * lanes - 1) // (GROUP * lanes), lanes, depth)
            elif n >= NARROW:
                row_blocks(x, y, out, acc, b, b % groups, rows, n,
                           (n + GROUP * NARROW - 1) // (GROUP * NARROW), NARROW, depth)
            else:
                for i in range(rows):
                    for col in range(n):
                        out[b, i, col] = T.float32(0)
                        for j in range(depth):
                            out[b, i, col] = out[b, i, col] + x[b, i, j] * y[b % groups, j, col]

    return kernel


TRANSPOSED_COLUMNS = 4   # output columns (rows of y) whose dot products run interleaved


def transposed_supported(unit: VectorUnit, depth: int) -> bool:
    """Whether K = depth is whole vectors (the transposed kernel's rows are read as vectors)
    of 4 to 32 lanes (fp32.halve_lanes)."""
    return 4 <= unit.lanes <= 32 and depth % unit.lanes == 0 and depth > 0


def batched_matmul_transposed_kernel(unit: VectorUnit, depth: int,
                                     y_dtype: str = "float32") -> tirx.PrimFunc:
    """(x (B, M, K), y (G, N, K)) -> (B, M, N) float32 with K = depth (transposed_supported),
    M and N symbolic, y float32 or float16 (y_dtype; widened in registers, half_vector):

        out[b, i, n] = sum_k x[b, i, k] * y[b % G, n, k]

    y as the decoder's key caches hold it, (frames, head_dim) per head: the scores read each
    key row as stored instead of a transposed (head_dim, frames) copy made every step (for
    Whisper tiny.en's 1500-frame cross-attention keys that copy cost more than everything
    else of a step but the logits). Each output is the dot product of two contiguous rows:
    K / L vector products summed into one accumulator, then the lanes of 4 such summed
    together by shuffles (fp32.lane_sums_of_4; one at a time by halving, fp32.halve_lanes,
    where N < 4). TRANSPOSED_COLUMNS columns at a time, so the products of
    independent accumulators overlap; the last columns are moved back to end at N as in the
    symbolic-width kernel (computed twice, same values)."""
    lanes = unit.lanes
    chunks = depth // lanes
    group = TRANSPOSED_COLUMNS

    @T.macro
    def columns(x, y, out, acc, b, g, i, first, count):
        """out[b, i, first : first + count] from `count` accumulators of L lanes."""
        for c in T.unroll(count):
            acc[T.ramp(c * lanes, 1, lanes)] = T.broadcast(T.float32(0), lanes)
        for chunk in T.unroll(chunks):
            for c in T.unroll(count):
                acc[T.ramp(c * lanes, 1, lanes)] = (
                    acc[T.ramp(c * lanes, 1, lanes)]
                    + x.vload([b, i, chunk * lanes], f"float32x{lanes}")
                    * half_vector(y, [g, first + c, chunk * lanes], y_dtype, lanes))
        if count == 4:
            out.vstore([b, i, first], lane_sums_of_4(
                [acc[T.ramp(c * lanes, 1, lanes)] for c in range(4)], lanes))
        else:
            for c in T.unroll(count):
                halve_lanes(acc, c * lanes, lanes)
                out[b, i, first + c] = acc[c * lanes] + acc[c * lanes + 1]

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, y_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        batch, groups, rows, n = T.int64(), T.int64(), T.int64(), T.int64()
        x = T.match_buffer(x_handle, (batch, rows, depth), "float32")
        y = T.match_buffer(y_handle, (groups, n, depth), y_dtype)
        out = T.match_buffer(out_handle, (batch, rows, n), "float32")
        acc = T.alloc_buffer((group * lanes,), "float32", scope="local")
        for b in range(batch):
            for i in range(rows):
                if n >= group:
                    for block in range((n + group - 1) // group):
                        columns(x, y, out, acc, b, b % groups, i,
                                T.min(block * group, n - group), group)
                else:
                    for column in range(n):
                        columns(x, y, out, acc, b, b % groups, i, column, 1)

    return kernel
