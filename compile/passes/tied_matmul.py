"""A linear layer on a weight that is also gathered from (a tied embedding) reads it as stored.

Pattern:

    matmul(x (rows, K) f32, permute_dims(W (N, K)))   W an fp32 weight input that some
                                                      `take` also reads (Whisper's logits
                                                      against its token embedding)
    matmul(x (rows, K) f32, permute_dims(astype(Wq (N, K) int8, f32)))
                                              Wq int8 rows that some `take` also reads
                                              (compile/whisper_int8.py's Int8Embedding: its
                                              per-row scale multiplies the result after)
Rewrite:

    out = call_tir(rowdot kernel, x, W)       compile/kernels/rowdot.py
    out = call_tir(int8 rowdot kernel, x, Wq) the int8 rows read as stored, widened in
                                              registers: no fp32 copy of them is made

Fp32Matmul would pack W into its kernel's layout, and the weights phase would then store the
packed copy beside the one the gather reads (80 MB twice for Whisper tiny.en). Run it before
Fp32Matmul.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.rowdot import (
    rowdot_int8_kernel,
    rowdot_int8_supported,
    rowdot_kernel,
    rowdot_supported,
)
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op


@mutator
class _Rewriter(Fp32KernelRewriter):
    def before_function(self, function: relax.Function) -> None:
        gathered: set[relax.Var] = set()

        def visit(expr: relax.Expr) -> None:
            if is_op(expr, "relax.take") and expr.args[0] in self.weights:
                gathered.add(expr.args[0])

        relax.analysis.post_order_visit(function, visit)
        self.gathered = gathered

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not (is_op(call, "relax.matmul") and call.args[0].ty.ndim == 2
                and call.args[0].ty.dtype == "float32" and call.ty.dtype == "float32"):
            return call
        transposed = self._bound(call.args[1])
        if not self.permutes(transposed, [1, 0]):
            return call
        weight = self._bound(transposed.args[0])
        if is_op(weight, "relax.astype") and weight.ty.dtype == "float32":
            return self._int8_rows(call, self._bound(weight.args[0]))
        if weight not in self.gathered or weight.ty.dtype != "float32":
            return call
        n, k = (int(d) for d in weight.ty.shape.values)
        if not rowdot_supported(self.unit, k):
            return call
        kernel = self._kernel(f"rowdot_{self.unit.lanes}_{n}x{k}",
                              lambda: rowdot_kernel(self.unit, n, k))
        return relax.call_tir(kernel, [call.args[0], weight], call.ty)

    def _int8_rows(self, call: relax.Call, values: relax.Expr) -> relax.Expr:
        """The matmul on astype(values, f32): the int8 kernel when `values` are gathered int8
        rows, else the call unchanged."""
        if values not in self.gathered or values.ty.dtype != "int8":
            return call
        n, k = (int(d) for d in values.ty.shape.values)
        if not rowdot_int8_supported(self.unit, k):
            return call
        kernel = self._kernel(f"rowdot_int8_{self.unit.lanes}_{n}x{k}",
                              lambda: rowdot_int8_kernel(self.unit, n, k))
        return relax.call_tir(kernel, [call.args[0], values], call.ty)


@tvm.transform.module_pass(opt_level=0, name="TiedMatmul")
class TiedMatmul(KernelPass):
    """Matmuls on a weight that is also gathered from -> the row-dot kernels."""

    rewriter = _Rewriter
