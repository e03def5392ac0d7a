"""gelu(x) -> x * 0.5 * (1 + erf(x / sqrt(2))), as Relax ops.

Whisper's MLP and convolutions use exact GELU. Legalized as one op, its erf is a libm call per
element, which LLVM cannot vectorize: 113 of a 430 ms int8 Whisper encoder (4 layers of
1500 x 1536 activations; AMD EPYC, 1 thread). Spelt out, FastMathTransform (compile/pipeline.py,
LEGALIZE_PASSES, after this pass) turns the erf into TVM's fast_erf polynomial, which vectorizes;
its error is within 1e-6 of erf on float32.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.passes.rewriting import FunctionRewriter, is_op


@mutator
class _Expander(FunctionRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not is_op(call, "relax.nn.gelu"):
            return call
        x = call.args[0]
        dtype = call.ty.dtype

        def const(value: float) -> relax.Expr:
            return relax.const(value, dtype)

        erf = self.builder_.emit(relax.op.erf(
            self.builder_.emit(relax.op.multiply(x, const(1 / math.sqrt(2))))))
        half_x = self.builder_.emit(relax.op.multiply(x, const(0.5)))
        return relax.op.multiply(half_x, self.builder_.emit(relax.op.add(erf, const(1.0))))


@tvm.transform.module_pass(opt_level=0, name="GeluAsErf")
class GeluAsErf:
    """Expands each nn.gelu into erf and arithmetic, for FastMathTransform's fast_erf."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _Expander(mod).transform()
