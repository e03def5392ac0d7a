"""A tied int8 token embedding stored once, interleaved for vpdpbusd: logits and row gathers.

Whisper's token embedding (51864 x 384 int8, one fp32 scale per 128 columns of a row) is read
twice a decoder step: one row gathered per token, and every row multiplied for the logits.
The logits are the step's largest cost, a 20 MB stream. Stored as rows, each logit is a
dot product of two rows that ends in a sum across a vector's lanes, and the kernel ran at half
the memory's rate (1.3 ms a step). Interleaved, 16 rows share each 64-byte vector:

    table[t, q, r, lane, j] = w[(t * BLOCKS + r) * 16 + lane, 4 * q + j] + 128 (as uint8)
    scales[b, g, lane]       = scale[b * 16 + lane, g]

so one vpdpbusd multiplies 16 rows' 4 columns by the same 4 activations (broadcast) and adds
them into 16 lanes that are the 16 logits: no sums across lanes, and a task's BLOCKS blocks
are one contiguous stream. Rows are padded with zeros to whole tasks (40 rows for Whisper).
The stored bytes are the rows' plus 128 (the unsigned operand of vpdpbusd as they are): each
group's products then come out 128 * sum(xq) too large, a term per activation row and group
that starts the accumulators negated. The gather kernels read a token's row back out of the
same table, so the model stores the embedding once.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.int8 import VNNI, DotIsa
from tinyasr.compile.kernels.quantize import INT8_MAX as LEVELS
from tinyasr.compile.kernels.quantize import TINY

LANES = VNNI.lanes     # rows a vector interleaves: vpdpbusd's 16 int32 results
QUAD = VNNI.group      # columns of a row in each of them
BLOCKS = 4             # blocks of 16 rows a task streams at once (each its own accumulator)
VECTOR_BYTES = LANES * QUAD


def interleaved_supported(isa: DotIsa, k: int, group: int) -> bool:
    """AVX-512 VNNI, and scale groups of whole 4-column quads."""
    return isa is VNNI and k % group == 0 and group % QUAD == 0


def tasks_of(n: int) -> int:
    return -(-n // (BLOCKS * LANES))


def table_shape(n: int, k: int) -> tuple[int, int, int, int, int]:
    return (tasks_of(n), k // QUAD, BLOCKS, LANES, QUAD)


def scales_shape(n: int, groups: int) -> tuple[int, int, int]:
    return (tasks_of(n) * BLOCKS, groups, LANES)


def interleave(values: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy's (table, scales) of int8 rows (n, k) and their scales (n, groups): what the
    compiler's weight transform (passes/tied_matmul.py) computes, for tests."""
    n, k = values.shape
    tasks = tasks_of(n)
    padded = np.zeros((tasks * BLOCKS * LANES, k), np.int8)
    padded[:n] = values
    table = (padded.view(np.uint8) ^ 0x80).view(np.int8).reshape(
        tasks, BLOCKS, LANES, k // QUAD, QUAD).transpose(0, 3, 1, 2, 4)
    scales = np.zeros((tasks * BLOCKS * LANES, scale.shape[1]), np.float32)
    scales[:n] = scale
    scales = scales.reshape(tasks * BLOCKS, LANES, -1).transpose(0, 2, 1)
    return np.ascontiguousarray(table), np.ascontiguousarray(scales)


def interleaved_logits_kernel(n: int, k: int, group: int) -> tirx.PrimFunc:
    """(x (rows, k) f32, table, scales) -> (rows, n) f32, rows symbolic, each activation row
    rounded to int8 per group of the weight's scales (g: the columns of group g):

        sx[i, g] = max(max |x[i, g]|, 1e-12) / 127,  xq[i, g] = round(x[i, g] * (1 / sx[i, g]))
        out[i, c] = sum_g sx[i, g] scale[c, g] sum_{j in g} xq[i, j] w[c, j]

    One scale per row, as the linear layers round theirs, changed the punctuation or case of 4
    of the 16 real-speech transcripts in PyTorch, one per group of 128 changed 1 (WER the same).
    Parallel tasks of BLOCKS blocks of 16 rows (24 KB for Whisper: each activation row runs
    over them in turn while they stay in the first-level cache); per group, one int32
    accumulator per block, then its 16 sums times their 16 scales into the block's fp32
    totals, stored as 16 logits (lanes past n dropped)."""
    groups, quads = k // group, group // QUAD
    tasks = tasks_of(n)
    f32, i32, i8 = f"float32x{LANES}", f"int32x{LANES}", f"int8x{VECTOR_BYTES}"

    def lanes_of(block):
        return T.ramp(block * LANES, 1, LANES)

    @T.macro
    def round_row(x, xq, x_scale, terms, top, i):
        """xq[i], x_scale[i, g] and terms[i, g] = -128 * sum_g xq[i]."""
        for g in range(groups):
            top[0] = T.float32(0)
            for j in range(group):
                top[0] = T.max(top[0], T.fabs(x[i, g * group + j]))
            x_scale[i, g] = T.max(top[0], T.float32(TINY)) / T.float32(LEVELS)
            # times the reciprocal: what fast-math (arcp) made of a division in some loops
            # but not others, written out so that every row rounds alike
            top[0] = T.float32(1) / x_scale[i, g]
            for j in range(group):
                xq[i, g * group + j] = T.Cast("int8", T.max(T.min(
                    T.round(x[i, g * group + j] * top[0]), T.float32(LEVELS)),
                    T.float32(-LEVELS)))
            terms[i, g] = 0
            for j in range(group):
                terms[i, g] = terms[i, g] - 128 * T.Cast("int32", xq[i, g * group + j])

    @T.prim_func(private=True)
    def interleaved_logits(x_handle: T.handle,
                           table: T.Buffer(table_shape(n, k), "int8"),  # pyright: ignore[reportInvalidTypeForm]
                           scales: T.Buffer(scales_shape(n, groups), "float32"),  # pyright: ignore[reportInvalidTypeForm]
                           out_handle: T.handle):  # TVMScript: a buffer's type is a call
        T.func_attr({"tirx.noalias": True})
        rows = T.int64()
        x = T.match_buffer(x_handle, (rows, k), "float32")
        out = T.match_buffer(out_handle, (rows, n), "float32")
        xq = T.decl_buffer((rows, k), "int8")
        quads_of_x = T.decl_buffer((rows, k // QUAD), "int32", data=xq.data)
        x_scale = T.decl_buffer((rows, groups), "float32")
        terms = T.decl_buffer((rows, groups), "int32")
        top = T.decl_buffer((1,), "float32", scope="local")
        for i in range(rows):
            round_row(x, xq, x_scale, terms, top, i)
        for task in T.parallel(tasks):
            # declared in the parallel body: one per task (see rowdot.rowdot_kernel)
            sums = T.decl_buffer((BLOCKS * LANES,), "int32", scope="local")
            totals = T.decl_buffer((BLOCKS * LANES,), "float32", scope="local")
            for i in range(rows):
                for block in T.unroll(BLOCKS):
                    totals[lanes_of(block)] = T.broadcast(T.float32(0), LANES)
                for g in T.unroll(groups):
                    for block in T.unroll(BLOCKS):
                        sums[lanes_of(block)] = T.broadcast(terms[i, g], LANES)
                    for q in T.unroll(quads):
                        for block in T.unroll(BLOCKS):
                            sums[lanes_of(block)] = T.call_llvm_pure_intrin(
                                i32, "llvm.x86.avx512.vpdpbusd.512", sums[lanes_of(block)],
                                table.vload([task, g * quads + q, block, 0, 0], i8),
                                T.reinterpret(i8, T.broadcast(quads_of_x[i, g * quads + q],
                                                              LANES)))
                    for block in T.unroll(BLOCKS):
                        totals[lanes_of(block)] = totals[lanes_of(block)] + T.Cast(
                            f32, sums[lanes_of(block)]) * (
                            scales.vload([task * BLOCKS + block, g, 0], f32)
                            * T.broadcast(x_scale[i, g], LANES))
                for block in T.unroll(BLOCKS):
                    first = (task * BLOCKS + block) * LANES
                    if first + LANES <= n:
                        out.vstore([i, first], totals[lanes_of(block)])
                    else:
                        for lane in range(LANES):
                            if first + lane < n:
                                out[i, first + lane] = totals[block * LANES + lane]

    return interleaved_logits


def _row_of(n: int, token):
    """A token id clipped into the table's n rows (the caller's ids are not trusted, as
    passes/clip_take_indices.py makes of every gather)."""
    return T.max(T.min(T.Cast("int64", token), T.int64(n - 1)), T.int64(0))


def interleaved_gather_kernel(n: int, k: int, index_dtype: str) -> tirx.PrimFunc:
    """(table, tokens (m,)) -> (m, k) int8: the rows `tokens` of w (take(w, tokens, mode=clip))."""

    @T.prim_func(private=True)
    def interleaved_gather(table: T.Buffer(table_shape(n, k), "int8"),  # pyright: ignore[reportInvalidTypeForm]
                           tokens_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        m = T.int64()
        tokens = T.match_buffer(tokens_handle, (m,), index_dtype)
        out = T.match_buffer(out_handle, (m, k), "int8")
        for i, column in T.grid(m, k):
            row = _row_of(n, tokens[i])
            out[i, column] = T.bitwise_xor(
                table[row // (BLOCKS * LANES), column // QUAD, row // LANES % BLOCKS,
                      row % LANES, column % QUAD], T.int8(-128))

    return interleaved_gather


def interleaved_scales_gather_kernel(n: int, groups: int, index_dtype: str) -> tirx.PrimFunc:
    """(scales, tokens (m,)) -> (m, groups) f32: the scales of the rows `tokens`."""

    @T.prim_func(private=True)
    def interleaved_scales_gather(
            scales: T.Buffer(scales_shape(n, groups), "float32"),  # pyright: ignore[reportInvalidTypeForm]
            tokens_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        m = T.int64()
        tokens = T.match_buffer(tokens_handle, (m,), index_dtype)
        out = T.match_buffer(out_handle, (m, groups), "float32")
        for i, g in T.grid(m, groups):
            row = _row_of(n, tokens[i])
            out[i, g] = scales[row // LANES, g, row % LANES]

    return interleaved_scales_gather
