"""A linear layer's input rounded to int8 per row, in one pass over each row:

    s[i]    = max(max_k |x[i, k]|, 1e-12) / 127
    xq[i, k] = int8(clip(round(x[i, k] / s[i]), -127, 127))

the same operations, in the same order, as the reference's rounding
(tinyasr.model.compression.quantize) and the Relax ops it imports as, so the integers are the same
bits. Legalized, those ops were three kernels per layer (the abs-max, the scale, the rounding), each
a pass over the rows or their scales, with scalar reductions. Here each row is read from the
first-level cache for the rounding right after its max: vectors of L lanes, the last one moved back
to end at K when L does not divide K (its lanes are then computed twice, with the same values).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import NARROW, VectorUnit

INT8_MAX = 127.0
TINY = 1e-12   # keeps an all-zero row's scale non-zero


def quantize_rows_kernel(unit: VectorUnit, k: int) -> tirx.PrimFunc:
    """x (rows, k) float32 -> (xq (rows, k) int8, s (rows, 1) float32), k >= NARROW."""
    assert k >= NARROW, f"a row of {k} is narrower than one vector of {NARROW}"
    lanes = unit.lanes if k >= unit.lanes else NARROW
    full, last = k // lanes, k - lanes

    def rounded(x: tirx.Buffer, scale: tirx.Expr, row: tirx.Expr | int,
                column: tirx.Expr | int) -> tirx.Expr:
        # vload: TVM's Python code gives tirx.Buffer the type of a Var, which has none
        return T.Cast(f"int8x{lanes}", T.max(T.min(
            T.round(x.vload([row, column], f"float32x{lanes}")  # pyright: ignore[reportAttributeAccessIssue]
                    / T.broadcast(scale, lanes)),
            T.broadcast(T.float32(INT8_MAX), lanes)), T.broadcast(T.float32(-INT8_MAX), lanes)))

    @T.prim_func(private=True, s_tir=True)
    def kernel(x_handle: T.handle, q_handle: T.handle, s_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        rows = T.int64()
        x = T.match_buffer(x_handle, (rows, k), "float32")
        q = T.match_buffer(q_handle, (rows, k), "int8")
        s = T.match_buffer(s_handle, (rows, 1), "float32")
        with T.sblock("root"):   # a call with one input must look like a TVM op (see above)
            top = T.alloc_buffer((lanes,), "float32", scope="local")
            scale = T.alloc_buffer((1,), "float32", scope="local")
            for row in range(rows):
                top[T.ramp(0, 1, lanes)] = T.fabs(x.vload([row, last], f"float32x{lanes}"))
                for v in range(full):
                    top[T.ramp(0, 1, lanes)] = T.max(top[T.ramp(0, 1, lanes)],
                                                     T.fabs(x.vload([row, v * lanes],
                                                                    f"float32x{lanes}")))
                scale[0] = top[0]
                for lane in range(1, lanes):
                    scale[0] = T.max(scale[0], top[lane])
                scale[0] = T.max(scale[0], T.float32(TINY)) / T.float32(INT8_MAX)
                s[row, 0] = scale[0]
                q.vstore([row, last], rounded(x, scale[0], row, last))
                for v in range(full):
                    q.vstore([row, v * lanes], rounded(x, scale[0], row, v * lanes))

    return kernel
