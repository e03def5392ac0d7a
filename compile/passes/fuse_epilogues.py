"""A layer's bias add and ReLU move into the store of the matmul kernel before them.

Pattern (k a call of a kernel marked with compile/epilogue.EPILOGUE_ATTR, still with the
identity epilogue; each intermediate used once; `reshape` optional at each step):

    y = add(reshape(k(..., zeros, -inf)), bias)     bias: a weight input of shape (N,), seen
    z = relu(reshape(y))                            through reshapes and permutes as (1.., N)

Rewrite:

    k(..., bias, 0), with y and z aliases of its (reshaped) output

Linear layers export as matmul + add(bias); convs, after the layout phase, as conv2d +
add(permute(reshape(bias))): both are this pattern once the kernel passes ran. Run it after
them, before the weights phase (which then finds the bias used directly).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.epilogue import EPILOGUE_ATTR
from tinyasr.compile.passes.fp32_matmul import weight_inputs, weight_source
from tinyasr.compile.passes.rewriting import FunctionRewriter, is_op


def _uses(function: relax.Function) -> Counter[relax.Var]:
    """How many bindings (and the function's result) read each variable."""
    uses: Counter[relax.Var] = Counter()
    for block in function.body.blocks:
        for binding in block.bindings:
            uses.update(relax.analysis.free_vars(binding.value))
    uses.update(relax.analysis.free_vars(function.body.body))
    return uses


@mutator
class _Fuser(FunctionRewriter):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.weights = weight_inputs(mod)
        self.epilogues: dict[relax.Call, tuple[relax.Expr | None, float]] = {}  # kernel call ->
        # (its new bias, None: keep it; its lower clamp)
        self.aliases: dict[relax.Call, relax.Var] = {}   # fused add / relu -> what it returns

    def before_function(self, function: relax.Function) -> None:
        """Finds the fusions (on the unchanged function, whose use counts are exact)."""
        bound = {binding.var: binding.value for block in function.body.blocks
                 for binding in block.bindings}
        uses, fused_into = _uses(function), {}   # alias var -> the kernel's binding var

        def value_of(expr: relax.Expr) -> relax.Expr:
            while isinstance(expr, relax.Var) and expr in bound:
                expr = bound[expr]
            return expr

        def kernel_of(var: relax.Expr) -> relax.Var | None:
            """The kernel binding `var` is (through once-used reshapes and fused aliases)."""
            while isinstance(var, relax.Var):
                if var in fused_into:
                    return fused_into[var]
                value = bound.get(var)
                if is_op(value, "relax.reshape") and uses[value.args[0]] == 1:
                    var = value.args[0]
                    continue
                is_kernel = (is_op(value, "relax.call_tir")
                             and EPILOGUE_ATTR in (self.mod[value.args[0]].attrs or {}))
                return var if is_kernel else None
            return None

        def bias_input(operand: relax.Expr, n: int) -> relax.Var | None:
            """The (N,) weight input that `operand` (shape (1.., N)) reshapes or permutes."""
            shape = [int(d) if isinstance(d, tvm.tirx.IntImm) else -1
                     for d in operand.ty.shape.values]
            if not shape or shape[-1] != n or any(d != 1 for d in shape[:-1]):
                return None
            source = weight_source(operand, value_of, self.weights)
            is_bias = (source is not None and source.ty.dtype == "float32"
                       and [int(d) for d in source.ty.shape.values] == [n])
            return source if is_bias else None

        for var, value in bound.items():
            if is_op(value, "relax.add"):
                for x, other in (list(value.args), list(value.args)[::-1]):
                    kernel = kernel_of(x) if uses[x] == 1 else None
                    if kernel is None or bound[kernel] in self.epilogues:
                        continue   # (a bias already fused: this add is another one)
                    bias = bias_input(other, int(bound[kernel].ty.shape.values[-1]))
                    if bias is not None and tvm_ffi.structural_equal(x.ty.shape, value.ty.shape):
                        self.epilogues[bound[kernel]] = (bias, -np.inf)
                        self.aliases[value], fused_into[var] = x, kernel
                        break
            elif is_op(value, "relax.nn.relu") and uses[value.args[0]] == 1:
                kernel = kernel_of(value.args[0])
                if kernel is None:
                    continue
                bias, lower = self.epilogues.get(bound[kernel], (None, -np.inf))
                if lower < 0:   # (not clamped already)
                    self.epilogues[bound[kernel]] = (bias, 0.0)
                    self.aliases[value], fused_into[var] = value.args[0], kernel

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        if op in self.aliases:
            return self.visit_expr(self.aliases[op])
        new = super().visit_call_(op)
        if op not in self.epilogues:
            return new
        bias, lower = self.epilogues[op]
        inputs = list(new.args[1].fields)
        inputs[-2:] = [inputs[-2] if bias is None else bias, relax.const(np.float32(lower))]
        return relax.call_tir(new.args[0], inputs, new.ty)


@tvm.transform.module_pass(opt_level=0, name="FuseEpilogues")
class FuseEpilogues:
    """Bias adds and ReLUs after matmul kernels -> the kernels' own epilogue."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _Fuser(mod).transform()
