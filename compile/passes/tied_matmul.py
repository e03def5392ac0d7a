"""A linear layer on a weight that is also gathered from (a tied embedding) reads it as stored.

Pattern:

    matmul(x (rows, K) f32, permute_dims(W (N, K)))   W an fp32 weight input that some
                                                      `take` also reads (Whisper's logits
                                                      against its token embedding)
    matmul(x (rows, K) f32, permute_dims(reshape(multiply(
        reshape(astype(Wq (N, K) int8, f32), (N, G, K / G)), expand_dims(S (N, G), 2)),
        (N, K))))                             Wq int8 rows that some `take` also reads, S
                                              their scales per group of K / G columns
                                              (compile/whisper_int8.py's Int8Embedding)
Rewrite:

    out = call_tir(rowdot kernel, x, W)       compile/kernels/rowdot.py
    out = call_tir(int8 rowdot kernel, x, Wq, S)
                                              the int8 rows read as stored, each group's sum
                                              scaled: no fp32 copy of them is made. With
                                              AVX-512 VNNI x is rounded to int8 per group of
                                              the scales and the products run on vpdpbusd
                                              (Whisper tiny.en's logits: 2.4 -> 1.3 ms a step
                                              on the AMD EPYC host); elsewhere the rows are
                                              widened to fp32 in registers

Fp32Matmul would pack W into its kernel's layout, and the weights phase would then store the
packed copy beside the one the gather reads (80 MB twice for Whisper tiny.en). Run it before
Fp32Matmul.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator
from tvm.target import Target

from tinyasr.compile.kernels.int8 import dot_isa
from tinyasr.compile.kernels.rowdot import (
    rowdot_int8_kernel,
    rowdot_int8_supported,
    rowdot_kernel,
    rowdot_supported,
    rowdot_vnni_kernel,
    rowdot_vnni_supported,
)
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op


@mutator
class _Rewriter(Fp32KernelRewriter):
    def __init__(self, mod: tvm.IRModule, target: Target, choices: KernelChoices | None = None):
        super().__init__(mod, target, choices)
        self.isa = dot_isa(target)

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
        if is_op(weight, "relax.reshape"):
            return self._int8_rows(call, self._bound(weight.args[0]))
        if weight not in self.gathered or weight.ty.dtype != "float32":
            return call
        n, k = (int(d) for d in weight.ty.shape.values)
        if not rowdot_supported(self.unit, k):
            return call
        kernel = self._kernel(f"rowdot_{self.unit.lanes}_{n}x{k}",
                              lambda: rowdot_kernel(self.unit, n, k))
        return relax.call_tir(kernel, [call.args[0], weight], call.ty)

    def _int8_rows(self, call: relax.Call, scaled: relax.Expr) -> relax.Expr:
        """The matmul on the dequantized rows `scaled` (the multiply of the pattern): the
        int8 kernel when they are gathered int8 rows times per-group weight scales, else the
        call unchanged."""
        if not is_op(scaled, "relax.multiply"):
            return call
        for grouped, expanded in (scaled.args, reversed(scaled.args)):
            grouped, expanded = self._bound(grouped), self._bound(expanded)
            if not (is_op(grouped, "relax.reshape") and is_op(expanded, "relax.expand_dims")):
                continue
            widened, scale = self._bound(grouped.args[0]), expanded.args[0]
            if not (is_op(widened, "relax.astype") and widened.ty.dtype == "float32"):
                continue
            values = widened.args[0]
            if (values not in self.gathered or values.ty.dtype != "int8"
                    or scale not in self.weights or scale.ty.dtype != "float32"):
                continue
            n, k = (int(d) for d in values.ty.shape.values)
            scale_shape = [int(d) for d in scale.ty.shape.values]
            # the reshape splits each row into the scale's groups, the scale gets a unit axis
            if (scale_shape[0] != n or k % scale_shape[1]
                    or [int(d) for d in grouped.ty.shape.values]
                    != [n, scale_shape[1], k // scale_shape[1]]
                    or [int(a) for a in expanded.attrs.axis] != [2]):
                continue
            group = k // scale_shape[1]
            if rowdot_vnni_supported(self.isa, k, group):
                kernel = self._kernel(f"rowdot_vnni_{n}x{k}_g{group}",
                                      lambda n=n, k=k, group=group:
                                      rowdot_vnni_kernel(n, k, group))
                return relax.call_tir(kernel, [call.args[0], values, scale], call.ty)
            if not rowdot_int8_supported(self.unit, k, group):
                return call
            kernel = self._kernel(f"rowdot_int8_{self.unit.lanes}_{n}x{k}_g{group}",
                                  lambda n=n, k=k, group=group:
                                  rowdot_int8_kernel(self.unit, n, k, group))
            return relax.call_tir(kernel, [call.args[0], values, scale], call.ty)
        return call


@tvm.transform.module_pass(opt_level=0, name="TiedMatmul")
class TiedMatmul(KernelPass):
    """Matmuls on a weight that is also gathered from -> the row-dot kernels."""

    rewriter = _Rewriter
