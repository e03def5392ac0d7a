"""The fbank's last step in one pass over its rows: the log of the mel energies, floored, and
the global mean and variance normalization (CMVN) per channel,

    out[t, c] = (log(max(x[t, c], floor)) - mean[c]) * istd[c]

in vectors of L lanes, the log a polynomial (compile/kernels/polynomials.py); when L does not
divide the channels the last vector is moved back to end at the last channel (its lanes are
computed twice, with the same values). Legalized, TVM fused it into one function whose schedule
indexed the channel as a remainder of the flattened position, which kept it scalar with a libm
logf per element: 88 us for a 5 s utterance's 500 x 80, here 12 us (AMD EPYC Zen 5, 1 thread,
in the int8 encoder; its 5 s encode 1.50 -> 1.43 ms).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import NARROW, VectorUnit
from tinyasr.compile.kernels.polynomials import log_polynomial


def log_cmvn_kernel(unit: VectorUnit, channels: int) -> tirx.PrimFunc:
    """(x (rows, C), floor (), mean (C,), istd (C,)) float32 -> (rows, C), C >= NARROW."""
    assert channels >= NARROW, f"{channels} channels are narrower than one vector of {NARROW}"
    lanes = unit.lanes if channels >= unit.lanes else NARROW
    full, last = channels // lanes, channels - lanes
    vector = f"float32x{lanes}"

    def normalized(x: tirx.Buffer, floor: tirx.Buffer, mean: tirx.Buffer, istd: tirx.Buffer,
                   row: tirx.Expr | int, column: tirx.Expr | int) -> tirx.Expr:
        # vload: TVM's Python code gives tirx.Buffer the type of a Var, which has none
        energy = T.max(x.vload([row, column], vector),  # pyright: ignore[reportAttributeAccessIssue]
                       T.broadcast(floor[()], lanes))
        return ((log_polynomial(energy, lanes)
                 - mean.vload([column], vector))  # pyright: ignore[reportAttributeAccessIssue]
                * istd.vload([column], vector))  # pyright: ignore[reportAttributeAccessIssue]

    @T.prim_func(private=True, s_tir=True)
    def kernel(x_handle: T.handle, floor_handle: T.handle, mean_handle: T.handle,
               istd_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        rows = T.int64()
        x = T.match_buffer(x_handle, (rows, channels), "float32")
        floor = T.match_buffer(floor_handle, (), "float32")
        mean = T.match_buffer(mean_handle, (channels,), "float32")
        istd = T.match_buffer(istd_handle, (channels,), "float32")
        out = T.match_buffer(out_handle, (rows, channels), "float32")
        with T.sblock("root"):
            for row in range(rows):
                out.vstore([row, last], normalized(x, floor, mean, istd, row, last))
                for v in range(full):
                    out.vstore([row, v * lanes], normalized(x, floor, mean, istd, row, v * lanes))

    return kernel
