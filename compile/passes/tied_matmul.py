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
                                              scaled: no fp32 copy of them is made; the rows
                                              are widened to fp32 in registers
    With AVX-512 VNNI (compile/kernels/interleaved_rows.py):
    out = call_tir(interleaved logits, x, table(Wq), scales(S))
    take(Wq, ids) -> call_tir(interleaved gather, table(Wq), ids)
    take(S, ids)  -> call_tir(interleaved scales gather, scales(S), ids)
                                              Wq stored once, 16 rows interleaved per vector;
                                              x rounded to int8 per group of the scales, the
                                              products on vpdpbusd with no sums across lanes
                                              (Whisper tiny.en's logits on the AMD EPYC host:
                                              1.4 -> 0.5 ms with the table in cache, 1.35 ->
                                              1.0 ms from memory); the gathers read their
                                              rows back out of the same table

Fp32Matmul would pack W into its kernel's layout, and the weights phase would then store the
packed copy beside the one the gather reads (80 MB twice for Whisper tiny.en). Run it before
Fp32Matmul.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator
from tvm.target import Target

from tinyasr.compile.kernels.int8 import dot_isa
from tinyasr.compile.kernels.interleaved_rows import (
    interleaved_gather_kernel,
    interleaved_logits_kernel,
    interleaved_scales_gather_kernel,
    interleaved_supported,
    scales_shape,
    table_shape,
)
from tinyasr.compile.kernels.rowdot import (
    rowdot_int8_kernel,
    rowdot_int8_supported,
    rowdot_kernel,
    rowdot_supported,
)
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op


def transposed_weight(call: relax.Expr, bound: Callable[[relax.Expr], relax.Expr]
                      ) -> relax.Expr | None:
    """W of matmul(x (rows, K) f32, permute_dims(W, [1, 0])) -> f32 (both forms of the
    pattern), else None."""
    if not (is_op(call, "relax.matmul") and call.args[0].ty.ndim == 2
            and call.args[0].ty.dtype == "float32" and call.ty.dtype == "float32"):
        return None
    transposed = bound(call.args[1])
    if not Fp32KernelRewriter.permutes(transposed, [1, 0]):
        return None
    return bound(transposed.args[0])


def tied_int8_rows(call: relax.Expr, bound: Callable[[relax.Expr], relax.Expr],
                   gathered: set[relax.Var], weights: set[relax.Var]
                   ) -> tuple[relax.Expr, relax.Expr, int] | None:
    """(values, scale, group) of a matmul on gathered int8 rows times per-group scales (the
    pattern's second form), else None."""
    weight = transposed_weight(call, bound)
    scaled = bound(weight.args[0]) if is_op(weight, "relax.reshape") else None
    if scaled is None or not is_op(scaled, "relax.multiply"):
        return None
    for grouped, expanded in (scaled.args, reversed(scaled.args)):
        grouped, expanded = bound(grouped), bound(expanded)
        if not (is_op(grouped, "relax.reshape") and is_op(expanded, "relax.expand_dims")):
            continue
        widened, scale = bound(grouped.args[0]), expanded.args[0]
        if not (is_op(widened, "relax.astype") and widened.ty.dtype == "float32"):
            continue
        values = widened.args[0]
        if (values not in gathered or values.ty.dtype != "int8"
                or scale not in weights or scale.ty.dtype != "float32"):
            continue
        n, k = (int(d) for d in values.ty.shape.values)
        scale_shape = [int(d) for d in scale.ty.shape.values]
        # the reshape splits each row into the scale's groups, the scale gets a unit axis
        if (scale_shape[0] != n or k % scale_shape[1]
                or [int(d) for d in grouped.ty.shape.values]
                != [n, scale_shape[1], k // scale_shape[1]]
                or [int(a) for a in expanded.attrs.axis] != [2]):
            continue
        return values, scale, k // scale_shape[1]
    return None


def _bindings(function: relax.Function) -> dict[relax.Var, relax.Expr]:
    return {binding.var: binding.value for block in function.body.blocks
            for binding in block.bindings if isinstance(binding, relax.VarBinding)}


@mutator
class _Rewriter(Fp32KernelRewriter):
    def __init__(self, mod: tvm.IRModule, target: Target, choices: KernelChoices | None = None):
        super().__init__(mod, target, choices)
        self.isa = dot_isa(target)

    def before_function(self, function: relax.Function) -> None:
        """The weights some `take` gathers from, and of those the int8 tables whose logits
        take the interleaved kernel: their takes read the interleaved table too."""
        gathered: set[relax.Var] = set()

        def visit(expr: relax.Expr) -> None:
            if is_op(expr, "relax.take") and expr.args[0] in self.weights:
                gathered.add(expr.args[0])

        relax.analysis.post_order_visit(function, visit)
        self.gathered = gathered
        bindings = _bindings(function)

        def bound(expr: relax.Expr) -> relax.Expr:
            while isinstance(expr, relax.Var) and expr in bindings:
                expr = bindings[expr]
            return expr

        self.interleaved: dict[relax.Expr, tuple[relax.Expr, relax.Expr]] = {}
        for value in bindings.values():
            tied = tied_int8_rows(value, bound, gathered, self.weights)
            if tied is None:
                continue
            values, scale, group = tied
            if interleaved_supported(self.isa, int(values.ty.shape.values[1]), group):
                self.interleaved[values] = self.interleaved[scale] = (values, scale)

    def _table(self, values: relax.Expr) -> relax.Expr:
        """The interleaved table of int8 rows `values` (interleaved_rows.table_shape): padded
        to whole tasks, 128 added (the sign bit flipped), rows of 16 x 4 columns side by side.
        Weights alone, emitted at each use (the gathers and the logits): LiftWeightTransforms
        merges the identical copies and computes the table at compile time, once."""
        n, k = (int(d) for d in values.ty.shape.values)
        tasks, quads, blocks, lanes, quad = table_shape(n, k)
        padded = relax.op.nn.pad(values, [0, tasks * blocks * lanes - n, 0, 0])
        flipped = relax.op.bitwise_xor(padded, relax.const(-128, "int8"))
        return self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(flipped, [tasks, blocks, lanes, quads, quad]), [0, 3, 1, 2, 4]))

    def _scales(self, scale: relax.Expr) -> relax.Expr:
        """The scales (n, groups) as interleaved_rows.scales_shape."""
        n, groups = (int(d) for d in scale.ty.shape.values)
        blocks, _, lanes = scales_shape(n, groups)
        padded = relax.op.nn.pad(scale, [0, blocks * lanes - n, 0, 0])
        return self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(padded, [blocks, lanes, groups]), [0, 2, 1]))

    def _gather(self, call: relax.Call) -> relax.Expr:
        """A take from an interleaved table's rows or scales, reading the interleaved copy."""
        values, scale = self.interleaved[call.args[0]]
        tokens = call.args[1]
        if call.attrs.axis != 0 or tokens.ty.ndim != 1:
            return call
        n, k = (int(d) for d in values.ty.shape.values)
        index = tokens.ty.dtype
        if call.args[0] == values:
            kernel = self._kernel(f"interleaved_gather_{n}x{k}_{index}",
                                  lambda: interleaved_gather_kernel(n, k, index))
            return relax.call_tir(kernel, [self._table(values), tokens], call.ty)
        groups = int(scale.ty.shape.values[1])
        kernel = self._kernel(f"interleaved_scales_gather_{n}x{groups}_{index}",
                              lambda: interleaved_scales_gather_kernel(n, groups, index))
        return relax.call_tir(kernel, [self._scales(scale), tokens], call.ty)

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if is_op(call, "relax.take") and call.args[0] in self.interleaved:
            return self._gather(call)
        tied = tied_int8_rows(call, self._bound, self.gathered, self.weights)
        if tied is not None:
            return self._int8_rows(call, *tied)
        weight = transposed_weight(call, self._bound)
        if weight is None or weight not in self.gathered or weight.ty.dtype != "float32":
            return call
        n, k = (int(d) for d in weight.ty.shape.values)
        if not rowdot_supported(self.unit, k):
            return call
        kernel = self._kernel(f"rowdot_{self.unit.lanes}_{n}x{k}",
                              lambda: rowdot_kernel(self.unit, n, k))
        return relax.call_tir(kernel, [call.args[0], weight], call.ty)

    def _int8_rows(self, call: relax.Call, values: relax.Expr, scale: relax.Expr,
                   group: int) -> relax.Expr:
        """The matmul on gathered int8 rows `values` times per-group scales `scale`
        (tied_int8_rows): the interleaved kernel where planned (before_function), else the
        widening one, else the call unchanged."""
        n, k = (int(d) for d in values.ty.shape.values)
        if values in self.interleaved:
            kernel = self._kernel(f"interleaved_logits_{n}x{k}_g{group}",
                                  lambda: interleaved_logits_kernel(n, k, group))
            return relax.call_tir(kernel, [call.args[0], self._table(values),
                                           self._scales(scale)], call.ty)
        if not rowdot_int8_supported(self.unit, k, group):
            return call
        kernel = self._kernel(f"rowdot_int8_{self.unit.lanes}_{n}x{k}_g{group}",
                              lambda: rowdot_int8_kernel(self.unit, n, k, group))
        return relax.call_tir(kernel, [call.args[0], values, scale], call.ty)


@tvm.transform.module_pass(opt_level=0, name="TiedMatmul")
class TiedMatmul(KernelPass):
    """Matmuls on a weight that is also gathered from -> the row-dot kernels."""

    rewriter = _Rewriter
