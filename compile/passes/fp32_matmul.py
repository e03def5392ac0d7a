"""fp32 matmuls on a weight become the register-tiled kernels of compile/kernels/fp32.py.

Pattern (x has a symbolic or static row count; the weight is an fp32 weight, a function input
after num_input as the import keeps every parameter, or a transpose or reshape of one):

    matmul(x (rows, K) f32, W (K, N))                a plain matrix (the fbank's DFT and mel)
    matmul(x (rows, K) f32, permute_dims(W (N, K)))  a linear layer as torch exports it

Rewrite:

    packed = W as (ceil(N/L), K, L)    weight-only: lifted and done once by the weights phase
    out    = call_tir(fp32 kernel, x, packed)

A matmul narrower than one vector, or whose weight is computed from other dtypes (the
dequantized int8 weights the int8 passes left, the BSR layers' dense fallback: packing those
would store them as fp32), stays a matmul: MetaSchedule's tuned schedule or TVM's default.
Run it after the int8 passes.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator
from tvm.target import Target

from tinyasr.compile.kernels.epilogue import identity_epilogue
from tinyasr.compile.kernels.fp32 import VectorUnit, fp32_matmul_tunable, vector_unit
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.rewriting import Bound, FunctionRewriter, KernelPass, is_op

LAYOUT_OPS = ("relax.permute_dims", "relax.reshape")
FLATTENING_OPS = ("relax.reshape", "relax.broadcast_to")


def weight_source(expr: relax.Expr, bound: Bound, weights: set[relax.Var]) -> relax.Var | None:
    """The weight input `expr` is, seen through transposes and reshapes; None if it is none."""
    expr = bound(expr)
    while any(is_op(expr, name) for name in LAYOUT_OPS):
        expr = bound(expr.args[0])
    return expr if isinstance(expr, relax.Var) and expr in weights else None


def weight_inputs(mod: tvm.IRModule) -> set[relax.Var]:
    """Every Relax function's weight parameters (those after its num_input)."""
    weights: set[relax.Var] = set()
    for function in mod.functions.values():
        if isinstance(function, relax.Function) and "num_input" in function.attrs:
            weights.update(function.params[int(function.attrs["num_input"]):])
    return weights


class Fp32KernelRewriter(FunctionRewriter):
    """A rewrite into the fp32 kernels of one vector unit."""

    def __init__(self, mod: tvm.IRModule, target: Target, choices: KernelChoices | None = None):
        super().__init__(mod, choices)
        self.unit: VectorUnit = vector_unit(target)
        self.weights = weight_inputs(mod)

    def is_fp32_weight(self, expr: relax.Expr) -> bool:
        """`expr` is an fp32 weight input, or transposes and reshapes of one."""
        source = weight_source(expr, self._bound, self.weights)
        return source is not None and source.ty.dtype == "float32"

    def unflattened(self, expr: relax.Expr) -> relax.Expr:
        """What `expr` is before reshapes and broadcasts (how the importer batches a matmul
        of more than two dimensions)."""
        expr = self._bound(expr)
        while any(is_op(expr, name) for name in FLATTENING_OPS):
            expr = self._bound(expr.args[0])
        return expr

    @staticmethod
    def permutes(expr: relax.Expr, order: list[int]) -> bool:
        """`expr` is permute_dims(., order)."""
        return (is_op(expr, "relax.permute_dims") and expr.attrs.axes is not None
                and [int(axis) for axis in expr.attrs.axes] == order)

    def fp32_matmul(self, x: relax.Expr, matrix: relax.Expr) -> relax.Expr:
        """x (rows, K) @ matrix (K, N), an fp32 weight; the caller checked
        `self.unit.supports(N)`."""
        rows = x.ty.shape.values[0]
        k, n = (int(d) for d in matrix.ty.shape.values)
        lanes, blocks = self.unit.lanes, self.unit.blocks(n)
        if blocks * lanes != n:
            matrix = relax.op.nn.pad(matrix, [0, 0, 0, blocks * lanes - n])
        packed = self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(matrix, [k, blocks, lanes]), [1, 0, 2]))
        kernel = self._tunable(fp32_matmul_tunable(self.unit, n, k))
        return relax.call_tir(kernel, [x, packed, *identity_epilogue(n)],
                              relax.TensorType([rows, n], "float32"))


@mutator
class _Rewriter(Fp32KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not (is_op(call, "relax.matmul") and len(call.args[0].ty.shape.values) == 2
                and call.args[0].ty.dtype == "float32" and call.ty.dtype == "float32"):
            return call
        matrix = call.args[1]
        if not (self.is_fp32_weight(matrix) and self.unit.supports(int(call.ty.shape.values[1]))):
            return call
        return self.fp32_matmul(call.args[0], matrix)


@tvm.transform.module_pass(opt_level=0, name="Fp32Matmul")
class Fp32Matmul(KernelPass):
    """fp32 matmuls on weights -> the register-tiled fp32 kernels of the target's vectors."""

    rewriter = _Rewriter
