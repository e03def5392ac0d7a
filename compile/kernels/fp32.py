"""fp32 matmul kernels on a constant weight, register-tiled, for any number of rows.

    out[i, n] = max(sum_k x[i, k] * w[k, n] + bias[n], lower)      (compile/kernels/epilogue.py)

The weight is packed once, at compile time, as (ceil(N/L), K, L): L = the target's fp32 vector
lanes (16 with AVX-512, 8 with AVX2, 4 with NEON or 128-bit RVV), a last partial block padded
with zero columns and stored lane by lane (the decoder's 31-word output layer). A register
tile of R rows x T blocks of L columns keeps R * T vector accumulators: per k, T weight
vectors are loaded and each is multiplied by R broadcast inputs. Rows past the last full tile
take one-row tiles. (R, T) is the template's parameter (compile/kernels/tunable.py): any pair
that fits the vector registers (R * T accumulators + T weights + 1 broadcast), T dividing the
blocks; the default fills them, so the multiply-adds of different accumulators overlap.

Why not MetaSchedule: its schedules are tuned at a static row count and replayed on the
symbolic one (frames), where the fbank's DFT matmul ran at 114 GFLOP/s even with its rows
padded to the tuned tile; this kernel runs it at about 168 (the host's AVX-512 fp32 peak at
its base clock is 166), and the 80-column mel matmul in 0.14 ms instead of 0.39.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx
from tvm.script import tirx as T
from tvm.target import Target, codegen

from tinyasr.compile.kernels.epilogue import EPILOGUE_ATTR
from tinyasr.compile.kernels.tunable import Params, Tunable, register_tiles

MAX_ROWS = 8      # rows per register tile at most
MAX_BLOCKS = 5    # column blocks per register tile at most
NARROW = 4        # lanes of the narrow vectors kernels use on rows below the unit's lanes


@dataclass(frozen=True)
class VectorUnit:
    """What a kernel is shaped by: fp32 lanes per vector register and how many registers."""
    lanes: int
    registers: int

    def blocks(self, n: int) -> int:
        """Vector blocks of `n` columns, a last partial one included."""
        return -(-n // self.lanes)

    def supports(self, n: int) -> bool:
        """At least one whole vector of columns: a narrower layer (the few-channel convolutions
        of a tiny model) would mostly compute padding; it stays a matmul for MetaSchedule."""
        return n >= self.lanes

    def tiles(self, blocks: int) -> list[tuple[int, int]]:
        """Every (rows, column blocks) register tile for a weight of `blocks` column blocks
        whose accumulators fit beside its weight vectors and one broadcast; the default
        first: the most accumulators (then the widest)."""
        return register_tiles(blocks, MAX_ROWS, MAX_BLOCKS,
                              lambda rows, width: rows * width + width + 1 <= self.registers)

    def tile(self, blocks: int) -> tuple[int, int]:
        """The default register tile (see `tiles`)."""
        return self.tiles(blocks)[0]


def vector_unit(target: Target) -> VectorUnit:
    """The target's fp32 vector lanes and vector register count: AVX-512 16 lanes and 32
    registers, AVX 8 and 16, other x86 (SSE) 4 and 16; NEON, RVV at VLEN 128 and scalar FPUs
    4 and 32 (LLVM splits the vectors of a scalar FPU into its 32 float registers)."""
    with target:
        if codegen.target_has_features("avx512f"):
            return VectorUnit(16, 32)
        if codegen.target_has_features("avx"):
            return VectorUnit(8, 16)
    # Target.attrs is a reflected map; TVM's __getattr__ makes it look like a str
    x86 = str(target.attrs.get("mtriple", "")).startswith("x86")  # pyright: ignore[reportAttributeAccessIssue]
    return VectorUnit(4, 16 if x86 else 32)


@T.macro
def multiply_add(acc, start, width, value, vector):
    """acc[start : start + width] += value (broadcast) * vector: one accumulator's step."""
    acc[T.ramp(start, 1, width)] = (acc[T.ramp(start, 1, width)]
                                    + T.broadcast(value, width) * vector)


def lane_sums_of_4(vectors: list, lanes: int) -> tirx.Expr:
    """The lane sums of 4 vectors of `lanes` lanes (a power of two, 4 to 32) as one 4-lane
    vector, by shuffles: each step adds the lanes `width` apart of the vectors side by side,
    halving them (a's and b's 16 lanes -> 8 sums of each, then a, b, c, d's 4 each, 2, 1): 7
    shuffle-adds for 4 sums of 16 lanes, where summing each apart (halve_lanes) extracted
    lanes one by one."""
    def halves(parts: list, part_lanes: int, width: int) -> tirx.Expr:
        first = [j for j in range(part_lanes * len(parts)) if (j // width) % 2 == 0]
        return T.Shuffle(parts, first) + T.Shuffle(parts, [j + width for j in first])

    pairs = [halves(vectors[:2], lanes, lanes // 2), halves(vectors[2:], lanes, lanes // 2)]
    sums, each = halves(pairs, lanes, lanes // 4), lanes // 4   # `each` lanes of a vector's
    while each > 1:
        sums, each = halves([sums], 4 * each, each // 2), each // 2
    return sums


@T.macro
def halve_lanes(acc, start, lanes):
    """Sums acc[start : start + lanes] (lanes a power of two, 4 to 32) down to two lanes by
    adding the upper half onto the lower (vector adds, where a scalar loop would extract every
    lane): the sum is then acc[start] + acc[start + 1]. A ramp's lanes must be constants,
    hence one step per possible width."""
    if lanes >= 32:
        acc[T.ramp(start, 1, 16)] = acc[T.ramp(start, 1, 16)] + acc[T.ramp(start + 16, 1, 16)]
    if lanes >= 16:
        acc[T.ramp(start, 1, 8)] = acc[T.ramp(start, 1, 8)] + acc[T.ramp(start + 8, 1, 8)]
    if lanes >= 8:
        acc[T.ramp(start, 1, 4)] = acc[T.ramp(start, 1, 4)] + acc[T.ramp(start + 4, 1, 4)]
    acc[T.ramp(start, 1, 2)] = acc[T.ramp(start, 1, 2)] + acc[T.ramp(start + 2, 1, 2)]


def fp32_matmul_tunable(unit: VectorUnit, n: int, k: int) -> Tunable:
    """The kernel as a template over its register tile (params rows, blocks)."""
    return Tunable(f"fp32_matmul_{unit.lanes}x{n}x{k}",
                   lambda params: fp32_matmul_kernel(unit, n, k, params),
                   tuple({"rows": rows, "blocks": width}
                         for rows, width in unit.tiles(unit.blocks(n))))


def fp32_matmul_kernel(unit: VectorUnit, n: int, k: int,
                       params: Params | None = None) -> tirx.PrimFunc:
    """(x (rows, k), packed w (blocks, k, L), bias (n,), lower ()) -> (rows, n) float32;
    `params` the register tile (default: `VectorUnit.tile`)."""
    lanes, blocks, whole = unit.lanes, unit.blocks(n), n // unit.lanes
    tile_rows, tile = ((params["rows"], params["blocks"]) if params is not None
                       else unit.tile(blocks))
    if blocks % tile:
        raise ValueError(f"a tile of {tile} blocks does not divide {blocks}")

    @T.macro
    def store_vector(out, bias, lower, row, block, vector):
        out.vstore([row, block * lanes], T.max(
            vector + bias.vload([block * lanes], f"float32x{lanes}"),
            T.broadcast(lower[()], lanes)))

    @T.macro
    def store(out, bias, lower, row, block, vector):
        """out[row, block's columns] = max(vector + bias, lower); a partial block lane by lane."""
        if whole == blocks:
            store_vector(out, bias, lower, row, block, vector)
        elif block < whole:
            store_vector(out, bias, lower, row, block, vector)
        else:
            for lane in T.unroll(n - whole * lanes):
                out[row, block * lanes + lane] = T.max(
                    T.Shuffle([vector], [lane]) + bias[block * lanes + lane], lower[()])

    @T.macro
    def row_tile(x, w, bias, lower, out, acc, outer, first, count):
        """`count` rows from row `first` times the tile's blocks."""
        for i in T.unroll(count * tile):
            acc[T.ramp(i * lanes, 1, lanes)] = T.broadcast(T.float32(0), lanes)
        for j in range(k):
            for r in T.unroll(count):
                for b in T.unroll(tile):
                    multiply_add(acc, (r * tile + b) * lanes, lanes, x[first + r, j],
                                 w.vload([outer * tile + b, j, 0], f"float32x{lanes}"))
        for r in T.unroll(count):
            for b in T.unroll(tile):
                store(out, bias, lower, first + r, outer * tile + b,
                      acc[T.ramp((r * tile + b) * lanes, 1, lanes)])

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, w_handle: T.handle, bias_handle: T.handle,
               lower_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, EPILOGUE_ATTR: True})
        rows = T.int64()
        x = T.match_buffer(x_handle, (rows, k), "float32")
        w = T.match_buffer(w_handle, (blocks, k, lanes), "float32")
        bias = T.match_buffer(bias_handle, (n,), "float32")
        lower = T.match_buffer(lower_handle, (), "float32")
        out = T.match_buffer(out_handle, (rows, n), "float32")
        acc = T.alloc_buffer((tile_rows * tile * lanes,), "float32", scope="local")
        for outer in range(blocks // tile):
            for full in range(rows // tile_rows):
                row_tile(x, w, bias, lower, out, acc, outer, full * tile_rows, tile_rows)
            for row in range(rows // tile_rows * tile_rows, rows):
                row_tile(x, w, bias, lower, out, acc, outer, row, 1)

    return kernel
