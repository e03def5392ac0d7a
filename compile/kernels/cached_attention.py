"""A decoder step's self-attention over its key/value cache, reading only the slots written.

    count     = clip(positions[i] + 1, 1, N)
    out[a, i] = softmax_{j < count}(scale * q[a, i] . k[a, j]) @ v[a, :count]

q (A, M, E): the step's M query rows of every (hypothesis, head) a; k and v (A, N, E): the
cache of N slots (Whisper: n_text_ctx = 448) after the step wrote its rows at `positions`.
The graph masks every slot past a query's position (where(not(arange(N) <= position), -inf,
scores)) and so scores, exponentiates and multiplies all N: a token 30 into a window read
448 keys and values per head where 31 count. Here each row stops at its count: the masked
slots' probabilities are exp(-inf) = 0, so only the fp32 summation order differs.

Per (a, i): the scores 4 keys at a time (their E-column products summed across lanes
together, fp32.lane_sums_of_4; the last 4 moved back to end at the count, rows of fewer keys
one at a time), their max, the exponentials in place with their total (softmax.py's
polynomial), then the context: the count's value rows times their probabilities, in E / L
vector accumulators, divided by the total.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import VectorUnit, halve_lanes, lane_sums_of_4
from tinyasr.compile.kernels.softmax import LOWEST, SCRATCH, TOP, TOTAL, exponentials_macro

KEYS = 4   # keys scored together (one shuffle reduction of their four accumulators)


def cached_attention_supported(unit: VectorUnit, head_dim: int) -> bool:
    """A head's columns are whole vectors of 4 to 32 lanes (lane_sums_of_4)."""
    return 4 <= unit.lanes <= 32 and head_dim % unit.lanes == 0


def cached_attention_kernel(unit: VectorUnit, n: int, head_dim: int,
                            scale: float) -> tirx.PrimFunc:
    """(q (A, M, E), k (A, N, E), v (A, N, E), positions (M,) int64) -> (A, M, E) float32,
    A and M symbolic."""
    lanes, vectors = unit.lanes, head_dim // unit.lanes
    vector = f"float32x{lanes}"
    exponentials = exponentials_macro(lanes)

    def lanes_of(index):
        return T.ramp(index * lanes, 1, lanes)

    @T.macro
    def dot(q, k, acc, a, i, j, slot):
        """acc[slot's lanes] = the E products of q[a, i] and k[a, j], lane by lane."""
        acc[lanes_of(slot)] = q.vload([a, i, 0], vector) * k.vload([a, j, 0], vector)
        for c in T.unroll(1, vectors):
            acc[lanes_of(slot)] = acc[lanes_of(slot)] + q.vload(
                [a, i, c * lanes], vector) * k.vload([a, j, c * lanes], vector)

    @T.prim_func(private=True)
    def cached_attention(q_handle: T.handle, k_handle: T.handle, v_handle: T.handle,
                         positions_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        rows, m = T.int64(), T.int64()
        q = T.match_buffer(q_handle, (rows, m, head_dim), "float32")
        k = T.match_buffer(k_handle, (rows, n, head_dim), "float32")
        v = T.match_buffer(v_handle, (rows, n, head_dim), "float32")
        positions = T.match_buffer(positions_handle, (m,), "int64")
        out = T.match_buffer(out_handle, (rows, m, head_dim), "float32")
        probs = T.decl_buffer((1, 1, n), "float32")
        acc = T.decl_buffer((KEYS * lanes,), "float32", scope="local")
        context = T.decl_buffer((head_dim,), "float32", scope="local")
        scratch = T.decl_buffer((SCRATCH,), "float32", scope="local")
        # serial: a step's few rows of work (~2 us for 6 heads of 31 slots) are less than a
        # parallel launch costs
        for a in range(rows):
            for i in range(m):
                count = T.max(T.min(positions[i] + T.int64(1), T.int64(n)), T.int64(1))
                if count >= KEYS:
                    for group in range((count + KEYS - 1) // KEYS):
                        first = T.min(group * KEYS, count - KEYS)
                        for key in T.unroll(KEYS):
                            dot(q, k, acc, a, i, first + key, key)
                        probs.vstore([0, 0, first], lane_sums_of_4(
                            [acc[lanes_of(key)] for key in range(KEYS)], lanes)
                            * T.broadcast(T.float32(scale), KEYS))
                else:
                    for j in range(count):
                        dot(q, k, acc, a, i, j, 0)
                        halve_lanes(acc, 0, lanes)
                        probs[0, 0, j] = (acc[0] + acc[1]) * T.float32(scale)
                scratch[TOP] = T.float32(LOWEST)
                for j in range(count):
                    scratch[TOP] = T.max(scratch[TOP], probs[0, 0, j])
                exponentials(probs, 0, 0, count, scratch[TOP], scratch)
                for c in T.unroll(vectors):
                    context[lanes_of(c)] = T.broadcast(T.float32(0), lanes)
                for j in range(count):
                    for c in T.unroll(vectors):
                        context[lanes_of(c)] = context[lanes_of(c)] + T.broadcast(
                            probs[0, 0, j], lanes) * v.vload([a, j, c * lanes], vector)
                for c in T.unroll(vectors):
                    out.vstore([a, i, c * lanes], context[lanes_of(c)] * T.broadcast(
                        T.float32(1) / scratch[TOTAL], lanes))

    return cached_attention
