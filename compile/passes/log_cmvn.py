"""The fbank's floored log and CMVN become one kernel (compile/kernels/log_cmvn.py).

Pattern (model/network/frontend.py's log of the mel energies, then the model's global CMVN):

    multiply(subtract(log(clip(x (..., C), floor, inf)), mean (C,)), istd (C,))   float32

Rewrite: call_tir(log_cmvn kernel, x as (rows, C), floor, mean, istd) in x's shape. Any
float32 x of C >= NARROW channels: the kernel is elementwise over its rows.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.fp32 import NARROW
from tinyasr.compile.kernels.log_cmvn import log_cmvn_kernel
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op, prim_number, static_sizes


def _channels_vector(expr: relax.Expr, channels: int) -> bool:
    return expr.ty.dtype == "float32" and static_sizes(expr) == [channels]


@mutator
class _Rewriter(Fp32KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not (is_op(call, "relax.multiply") and call.ty.dtype == "float32"
                and call.ty.shape is not None and call.ty.ndim >= 2):
            return call
        channels = static_sizes(call)[-1]   # pyright: ignore[reportOptionalSubscript]  # shaped
        if channels is None or channels < NARROW:
            return call
        centred, istd = self._bound(call.args[0]), call.args[1]
        if not (is_op(centred, "relax.subtract") and _channels_vector(istd, channels)):
            return call
        log, mean = self._bound(centred.args[0]), centred.args[1]
        if not (is_op(log, "relax.log") and _channels_vector(mean, channels)):
            return call
        clip = self._bound(log.args[0])
        if not is_op(clip, "relax.clip"):
            return call
        floor, ceiling = prim_number(clip.args[1]), prim_number(clip.args[2])
        x = clip.args[0]
        if (floor is None or ceiling != math.inf
                or not tvm_ffi.structural_equal(x.ty.shape, call.ty.shape)):
            return call
        rows = call.ty.shape.values[0]
        for size in call.ty.shape.values[1:-1]:
            rows = rows * size
        kernel = self._kernel(f"log_cmvn_{self.unit.lanes}_c{channels}",
                              lambda: log_cmvn_kernel(self.unit, channels))
        flat = self.builder_.emit(relax.op.reshape(x, [rows, channels]))
        out = self.builder_.emit(relax.call_tir(
            kernel, [flat, relax.const(np.float32(floor)), mean, istd],  # pyright: ignore[reportArgumentType]
            relax.TensorType([rows, channels], "float32")))
        return relax.op.reshape(out, call.ty.shape)


@tvm.transform.module_pass(opt_level=0, name="LogCmvn")
class LogCmvn(KernelPass):
    """The fbank's floored log and CMVN -> one vectorized kernel."""

    rewriter = _Rewriter
