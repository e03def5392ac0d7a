"""The exponentials of a softmax row in place, for the fused attention kernel
(compile/kernels/attention.py), which has just computed the row's scores and their max `top`
and so holds the row in the first-level cache:

    out[j] = exp(out[j] - top),    total = sum_j out[j]

The kernel divides by the total where it uses the row (its context rows), so the row itself
is neither scanned for its max nor normalized here: one pass, in vectors of L lanes. When L
does not divide the row, its last L columns are taken as one more vector overlapping the one
before (rows shorter than L use vectors of 4, rows shorter than 4 scalars): the last vector's
exponentials are computed from the scores before the other vectors overwrite them, and only
its own lanes are summed. A loop over the remainder instead ran LLVM's scalar epilogue, as slow
as the rest of the row together.

The exponential is a polynomial, not a libm call (compile/kernels/polynomials.py).
"""

from __future__ import annotations

from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import NARROW
from tinyasr.compile.kernels.polynomials import exp_polynomial

LOWEST = -3.4028234663852886e38
# what attention writes over a masked-out score (model/network/san_m.py attend)
MASKED_SCORE = -1e9
MAX_LANES = 16
TOP, TOTAL = 2 * MAX_LANES, 2 * MAX_LANES + 1   # scratch slots for a row's max and sum
SCRATCH = 2 * MAX_LANES + 2                     # two vectors, the max and the sum


@T.macro
def _vector_exponentials(out, b, row, n, lanes, top, scratch):
    """The pass on vectors of `lanes` (n >= lanes); scratch: SCRATCH local floats."""
    full = n // lanes
    last = n - lanes
    # the last vector's from the scores, kept aside; its lanes past the full vectors summed
    scratch[T.ramp(lanes, 1, lanes)] = exp_polynomial(
        out.vload([b, row, last], f"float32x{lanes}") - T.broadcast(top, lanes), lanes)
    scratch[T.ramp(0, 1, lanes)] = T.Select(
        T.ramp(last, 1, lanes) >= T.broadcast(full * lanes, lanes),
        scratch[T.ramp(lanes, 1, lanes)], T.broadcast(T.float32(0), lanes))
    for v in range(full):
        out.vstore([b, row, v * lanes], exp_polynomial(
            out.vload([b, row, v * lanes], f"float32x{lanes}") - T.broadcast(top, lanes), lanes))
        scratch[T.ramp(0, 1, lanes)] = (scratch[T.ramp(0, 1, lanes)]
                                        + out.vload([b, row, v * lanes], f"float32x{lanes}"))
    out.vstore([b, row, last], scratch[T.ramp(lanes, 1, lanes)])
    scratch[TOTAL] = T.float32(0)
    for lane in range(lanes):
        scratch[TOTAL] = scratch[TOTAL] + scratch[lane]


def exponentials_macro(lanes: int):
    """A T.macro (out, b, row, n, top, scratch): out[b, row, :n] = exp(out[b, row, :n] - top)
    in place, their sum in scratch[TOTAL]; scratch: SCRATCH local floats."""

    @T.macro
    def exponentials(out, b, row, n, top, scratch):
        if n >= lanes:
            _vector_exponentials(out, b, row, n, lanes, top, scratch)
        elif n >= NARROW:
            _vector_exponentials(out, b, row, n, NARROW, top, scratch)
        else:
            scratch[TOTAL] = T.float32(0)
            for j in range(n):
                out[b, row, j] = exp_polynomial(out[b, row, j] - top, 1)
                scratch[TOTAL] = scratch[TOTAL] + out[b, row, j]

    return exponentials
