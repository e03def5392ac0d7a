"""fp32 multi-head attention in one kernel: scores, (masked) softmax and context per block of
query rows, the probabilities never leaving the first-level cache.

    out[b, i, h*E:(h+1)*E] = softmax_j(q[b, i, h*E:(h+1)*E] . k[g, j, h*E:(h+1)*E])
                             @ v[g, :, h*E:(h+1)*E]

q (B, M, H*E), keys and values (G, N, H*E) with g = b % G (G = B, or G = 1: the decoder's
cross-attention reads the utterance's keys and values once for every hypothesis), out
(B, M, H*E): the layouts the linear layers produce and take, so no head transposes are needed
around the kernel. q is already scaled by 1/sqrt(E) (model/network/san_m.py attend). Masked, a score
where keep[b, i, j] is False is MASKED_SCORE before the softmax (the decoder's causal
self-attention).

Per head and batch, the head's keys are transposed to (E, N) in a workspace (once per head when
G = 1), so that the scores are vectors along N. Per block of B query rows: the scores
(tiles of S rows x V vectors along N, the last vectors moved back to end at N as in
compile/kernels/batched.py), each row's softmax in place (compile/kernels/softmax.py), then the
context (tiles of rows x the vectors of E, as the batched kernel's fixed width) from those
probabilities, stored at the head's columns; (B, S, V, and C rows per context tile) are the
template's parameters (compile/kernels/tunable.py), the default B = 4, V = 4 and S, C as many
rows up to B as the vector registers hold.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.batched import GROUP  # default score vectors along N per tile
from tinyasr.compile.kernels.fp32 import NARROW, VectorUnit, multiply_add
from tinyasr.compile.kernels.softmax import (
    LOWEST,
    MASKED_SCORE,
    SCRATCH,
    TOP,
    TOTAL,
    exponentials_macro,
)
from tinyasr.compile.kernels.tunable import Params, Tunable

BLOCK_ROWS = 4   # default query rows whose scores, softmax and context are computed together
BLOCKS = (2, 4, 6, 8)    # the block rows the template ranges over
SCORE_GROUPS = (2, 4, 8)   # score vectors along N per tile


def attention_supported(unit: VectorUnit, head_dim: int) -> bool:
    """Whether a head's E columns are the unit's vectors plus one multiple of NARROW."""
    return head_dim % NARROW == 0 and head_dim >= NARROW and unit.registers >= 2 * (
        head_dim // unit.lanes + (1 if head_dim % unit.lanes else 0)) + 1


def _fitting_rows(unit: VectorUnit, block: int, vectors: int) -> int:
    """Rows (up to `block`) of a tile of `vectors` accumulators per row that fit the vector
    registers beside the tile's `vectors` loads and one broadcast; at least 1."""
    return max(1, min(block, (unit.registers - vectors - 1) // vectors))


def attention_tiles(unit: VectorUnit, head_dim: int) -> list[Params]:
    """The template's space: block rows B, score rows S and context rows C (the fitting rows
    up to B, or half of them), score vectors V; the default first."""
    vectors = -(-head_dim // unit.lanes)

    def point(block: int, score_rows: int, group: int, context_rows: int) -> Params:
        return {"block": block, "score_rows": score_rows, "group": group,
                "context_rows": context_rows}

    default = point(BLOCK_ROWS, _fitting_rows(unit, BLOCK_ROWS, GROUP), GROUP,
                    _fitting_rows(unit, BLOCK_ROWS, vectors))
    space = [default]
    for block in BLOCKS:
        for group in SCORE_GROUPS:
            score, context = _fitting_rows(unit, block, group), _fitting_rows(unit, block, vectors)
            for s in sorted({score, max(1, score // 2)}, reverse=True):
                for c in sorted({context, max(1, context // 2)}, reverse=True):
                    if point(block, s, group, c) not in space:
                        space.append(point(block, s, group, c))
    # the most accumulators (latency hidden) first, the larger block first among equals
    space[1:] = sorted(space[1:], key=lambda p: (p["score_rows"] * p["group"]
                                                 + p["context_rows"] * vectors, p["block"]),
                       reverse=True)
    return space


def attention_tunable(unit: VectorUnit, heads: int, head_dim: int, masked: bool) -> Tunable:
    """The kernel as a template over its tiles."""
    return Tunable(f"attention_{unit.lanes}_h{heads}x{head_dim}{'_masked' if masked else ''}",
                   lambda params: attention_kernel(unit, heads, head_dim, masked, params),
                   tuple(attention_tiles(unit, head_dim)))


def attention_kernel(unit: VectorUnit, heads: int, head_dim: int, masked: bool,
                     params: Params | None = None) -> tirx.PrimFunc:
    """(q (B, M, H*E), k (G, N, H*E), v (G, N, H*E)[, keep (B, M, N) bool]) -> (B, M, H*E)
    float32, H = heads, E = head_dim (see attention_supported), G dividing B; `params` the
    tiles (default: the first of `attention_tiles`)."""
    lanes = unit.lanes
    full, rest = head_dim // lanes, head_dim % lanes
    params = params or attention_tiles(unit, head_dim)[0]
    block_rows, score_rows = params["block"], params["score_rows"]
    score_group, context_rows = params["group"], params["context_rows"]
    if not (1 <= score_rows <= block_rows and 1 <= context_rows <= block_rows):
        raise ValueError(f"{params}: tiles of more rows than the block")
    accumulators = max(score_rows * score_group, context_rows * max(full, 1)) * lanes
    dim = heads * head_dim
    exponentials = exponentials_macro(lanes)

    @T.macro
    def transpose_key(k, key_t, g, head, n):
        for j, e in T.grid(n, head_dim):
            key_t[e, j] = k[g, j, head * head_dim + e]

    @T.macro
    def score_tile(q, key_t, keep, probs, acc, tops, b, head, first, row0, count, group, n,
                   width):
        """probs[row0 : row0 + count, the group's V vectors of `width` columns, each moved
        back to end by n] = the queries of rows first + row0 ... times the head's keys."""
        for i in T.unroll(count * score_group):
            acc[T.ramp(i * lanes, 1, width)] = T.broadcast(T.float32(0), width)
        for e in range(head_dim):
            for r in T.unroll(count):
                for u in T.unroll(score_group):
                    multiply_add(acc, (r * score_group + u) * lanes, width,
                                 q[b, first + row0 + r, head * head_dim + e],
                                 key_t.vload([e, T.min((group * score_group + u) * width,
                                                       n - width)], f"float32x{width}"))
        for r in T.unroll(count):
            for u in T.unroll(score_group):
                if masked:
                    acc[T.ramp((r * score_group + u) * lanes, 1, width)] = T.Select(
                        keep.vload([b, first + row0 + r,
                                    T.min((group * score_group + u) * width, n - width)],
                                   f"boolx{width}"),
                        acc[T.ramp((r * score_group + u) * lanes, 1, width)],
                        T.broadcast(T.float32(MASKED_SCORE), width))
                probs.vstore([0, row0 + r, T.min((group * score_group + u) * width, n - width)],
                             acc[T.ramp((r * score_group + u) * lanes, 1, width)])
                tops[T.ramp((row0 + r) * lanes, 1, width)] = T.max(
                    tops[T.ramp((row0 + r) * lanes, 1, width)],
                    acc[T.ramp((r * score_group + u) * lanes, 1, width)])

    @T.macro
    def score_rows_of(q, key_t, keep, probs, acc, tops, b, head, first, row0, count, n):
        if n >= lanes:
            for group in range((n + score_group * lanes - 1) // (score_group * lanes)):
                score_tile(q, key_t, keep, probs, acc, tops, b, head, first, row0, count, group,
                           n, lanes)
        elif n >= NARROW:
            for group in range((n + score_group * NARROW - 1) // (score_group * NARROW)):
                score_tile(q, key_t, keep, probs, acc, tops, b, head, first, row0, count, group,
                           n, NARROW)
        else:
            for r, j in T.grid(count, n):
                probs[0, row0 + r, j] = T.float32(0)
                for e in range(head_dim):
                    probs[0, row0 + r, j] = (probs[0, row0 + r, j]
                                             + q[b, first + row0 + r, head * head_dim + e]
                                             * key_t[e, j])
                if masked:
                    probs[0, row0 + r, j] = T.if_then_else(keep[b, first + row0 + r, j],
                                                           probs[0, row0 + r, j],
                                                           T.float32(MASKED_SCORE))
                tops[(row0 + r) * lanes] = T.max(tops[(row0 + r) * lanes], probs[0, row0 + r, j])

    @T.macro
    def context_tile(probs, v, out, acc, tail, inverse, b, g, head, first, row0, count, n):
        """out[b, first + row0 ..., the head's columns] = probs[row0 ...] @ the head's values,
        row r times inverse[r] (its exponentials' 1 / sum)."""
        for i in T.unroll(count * full):
            acc[T.ramp(i * lanes, 1, lanes)] = T.broadcast(T.float32(0), lanes)
        if rest > 0:
            for r in T.unroll(count):
                tail[T.ramp(r * lanes, 1, rest)] = T.broadcast(T.float32(0), rest)
        for j in range(n):
            for r in T.unroll(count):
                for u in T.unroll(full):
                    multiply_add(acc, (r * full + u) * lanes, lanes, probs[0, row0 + r, j],
                                 v.vload([g, j, head * head_dim + u * lanes], f"float32x{lanes}"))
                if rest > 0:
                    multiply_add(tail, r * lanes, rest, probs[0, row0 + r, j],
                                 v.vload([g, j, head * head_dim + full * lanes], f"float32x{rest}"))
        for r in T.unroll(count):
            for u in T.unroll(full):
                out.vstore([b, first + row0 + r, head * head_dim + u * lanes],
                           acc[T.ramp((r * full + u) * lanes, 1, lanes)]
                           * T.broadcast(inverse[row0 + r], lanes))
            if rest > 0:
                out.vstore([b, first + row0 + r, head * head_dim + full * lanes],
                           tail[T.ramp(r * lanes, 1, rest)] * T.broadcast(inverse[row0 + r], rest))

    @T.macro
    def row_block(q, key_t, v, keep, out, probs, acc, tail, scratch, tops, inverse, b, g, head,
                  first, count, n):
        """Rows first ... first + count - 1 (count: block_rows or 1) of batch b, one head, over
        the first n key columns."""
        for r in T.unroll(count):
            tops[T.ramp(r * lanes, 1, lanes)] = T.broadcast(T.float32(LOWEST), lanes)
        for tile in T.unroll(count // score_rows):
            score_rows_of(q, key_t, keep, probs, acc, tops, b, head, first, tile * score_rows,
                          score_rows, n)
        for r in T.unroll(count % score_rows):
            score_rows_of(q, key_t, keep, probs, acc, tops, b, head, first,
                          count // score_rows * score_rows + r, 1, n)
        for r in range(count):
            scratch[TOP] = T.float32(LOWEST)
            for lane in range(lanes):
                scratch[TOP] = T.max(scratch[TOP], tops[r * lanes + lane])
            exponentials(probs, 0, r, n, scratch[TOP], scratch)
            inverse[r] = T.float32(1) / scratch[TOTAL]
        for tile in T.unroll(count // context_rows):
            context_tile(probs, v, out, acc, tail, inverse, b, g, head, first,
                         tile * context_rows, context_rows, n)
        for r in T.unroll(count % context_rows):
            context_tile(probs, v, out, acc, tail, inverse, b, g, head, first,
                         count // context_rows * context_rows + r, 1, n)

    @T.macro
    def visible_columns(keep, columns, b, first, count, n):
        """columns[0] = 1 + the last column any of the rows keeps: the columns after it are
        masked in every row, their probabilities 0 (exp(-1e9 - max)). n when a row keeps none
        (its weights are then equal over all n columns, as in torch)."""
        columns[0] = T.int64(0)
        for r in range(count):
            columns[1] = T.int64(0)
            for j in range(n):
                columns[1] = T.max(columns[1], T.Select(keep[b, first + r, j], j + 1,
                                                        T.int64(0)))
            columns[0] = T.Select(columns[1] == 0, n, T.max(columns[0], columns[1]))

    @T.macro
    def block(q, key_t, v, keep, out, probs, acc, tail, scratch, tops, inverse, columns, b, g,
              head, first, count, n):
        if masked:
            visible_columns(keep, columns, b, first, count, n)
            row_block(q, key_t, v, keep, out, probs, acc, tail, scratch, tops, inverse, b, g,
                      head, first, count, columns[0])
        else:
            row_block(q, key_t, v, keep, out, probs, acc, tail, scratch, tops, inverse, b, g,
                      head, first, count, n)

    @T.macro
    def body(q, k, v, keep, out, batch, groups, rows, n):
        key_t = T.alloc_buffer((head_dim, n), "float32")
        probs = T.alloc_buffer((1, block_rows, n), "float32")
        acc = T.alloc_buffer((accumulators,), "float32", scope="local")
        tail = T.alloc_buffer((context_rows * lanes,), "float32", scope="local")
        scratch = T.alloc_buffer((SCRATCH,), "float32", scope="local")
        columns = T.alloc_buffer((2,), "int64", scope="local")
        tops = T.alloc_buffer((block_rows * lanes,), "float32", scope="local")
        inverse = T.alloc_buffer((block_rows,), "float32", scope="local")
        for head in range(heads):
            for b in range(batch):
                if groups > 1 or b == 0:
                    transpose_key(k, key_t, b % groups, head, n)
                for first in range(0, rows // block_rows * block_rows, block_rows):
                    block(q, key_t, v, keep, out, probs, acc, tail, scratch, tops, inverse,
                          columns, b, b % groups, head, first, block_rows, n)
                for row in range(rows // block_rows * block_rows, rows):
                    block(q, key_t, v, keep, out, probs, acc, tail, scratch, tops, inverse,
                          columns, b, b % groups, head, row, 1, n)

    if masked:
        @T.prim_func(private=True)
        def masked_kernel(q_handle: T.handle, k_handle: T.handle, v_handle: T.handle,
                          keep_handle: T.handle, out_handle: T.handle):
            T.func_attr({"tirx.noalias": True})
            batch, groups, rows, n = T.int64(), T.int64(), T.int64(), T.int64()
            q = T.match_buffer(q_handle, (batch, rows, dim), "float32")
            k = T.match_buffer(k_handle, (groups, n, dim), "float32")
            v = T.match_buffer(v_handle, (groups, n, dim), "float32")
            keep = T.match_buffer(keep_handle, (batch, rows, n), "bool")
            out = T.match_buffer(out_handle, (batch, rows, dim), "float32")
            body(q, k, v, keep, out, batch, groups, rows, n)

        return masked_kernel

    @T.prim_func(private=True)
    def kernel(q_handle: T.handle, k_handle: T.handle, v_handle: T.handle,
               out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        batch, groups, rows, n = T.int64(), T.int64(), T.int64(), T.int64()
        q = T.match_buffer(q_handle, (batch, rows, dim), "float32")
        k = T.match_buffer(k_handle, (groups, n, dim), "float32")
        v = T.match_buffer(v_handle, (groups, n, dim), "float32")
        out = T.match_buffer(out_handle, (batch, rows, dim), "float32")
        body(q, k, v, None, out, batch, groups, rows, n)

    return kernel
