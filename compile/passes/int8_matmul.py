"""Matmuls on int8 weights become int8 x int8 -> int32 kernels with the requantize fused.

Pattern (a linear layer whose weight is int8 per output channel, as torch exports it):

    matmul(x (rows, K) f32, permute_dims(W)),  W = dequantize(wq (N, K) int8, scale (N,), 0, axis=0)
                                            or W = astype(wq, f32) * expand_dims(scale, 1)
                                               (tinyasr.compile.compressed_import.Int8Linear)

Rewrite:

    x_scale = max(|x|, per row) / 127                  activations rounded to int8 per row
    xq      = int8(clip(round(x / x_scale), -127, 127))
              (when x is already the reference's own per-row rounding, x = clip(round(x0 / s),
              -127, 127) * s, those integers and s are taken as they are: no second pass)
    packed  = wq in the kernel's (N/L, K/G, L, G) layout    weight-only: lifted, done once
    out     = call_tir(int8 kernel of the target's dot ISA, xq, packed, x_scale, scale)

Layers whose shape the ISA's vector width does not divide keep the dequantize + fp32 matmul.
Run DeadCodeElimination after it, so the unused fp32 dequantize disappears before the
weights phase lifts weight-only work.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.relax.expr_functor import mutator
from tvm.target import Target

from tinyasr.compile.kernels.epilogue import identity_epilogue
from tinyasr.compile.kernels.fp32 import VectorUnit, vector_unit
from tinyasr.compile.kernels.int8 import DotIsa, dot_isa, int8_matmul_tunable
from tinyasr.compile.kernels.int8_amx import has_amx
from tinyasr.compile.kernels.quantize import INT8_MAX, TINY, quantize_rows_kernel
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.rewriting import (
    Bound,
    FunctionRewriter,
    KernelPass,
    is_op,
    scalar_constant,
)


def linear_weight(call: relax.Call, bound: Bound) -> relax.Expr | None:
    """W when `call` is matmul(x (rows, K), permute_dims(W)): a linear layer as torch exports it."""
    if not is_op(call, "relax.matmul") or len(call.args[0].ty.shape.values) != 2:
        return None
    transposed = bound(call.args[1])
    return bound(transposed.args[0]) if is_op(transposed, "relax.permute_dims") else None


def int8_weight(weight: relax.Expr, bound: Bound) -> tuple[relax.Expr, relax.Expr] | None:
    """(wq, scale) when `weight` is an int8 weight dequantized per output channel."""
    if is_op(weight, "relax.dequantize") and int(weight.attrs.axis) == 0:
        wq, scale, zero_point = weight.args
        if not (isinstance(zero_point, tvm.ir.expr.GenericConst)
                and not zero_point.value.numpy().any()):
            return None
    elif is_op(weight, "relax.multiply"):
        values, scale = (bound(arg) for arg in weight.args)
        if not (is_op(values, "relax.astype") and is_op(scale, "relax.expand_dims")
                and [int(a) for a in scale.attrs.axis] == [1]):
            return None
        wq, scale = values.args[0], scale.args[0]
    else:
        return None
    return (wq, scale) if wq.ty.dtype == "int8" else None


def int8_rounding(x: relax.Expr, bound: Bound) -> tuple[relax.Expr, relax.Expr] | None:
    """(integers, s) when `x` is clip(round(x0 / s), -127, 127) * s: the int8 rounding the
    PyTorch reference applies to a layer's input
    (tinyasr.model.compression.quantize.fake_quantize)."""
    product = bound(x)
    if not is_op(product, "relax.multiply"):
        return None
    clipped, scale = product.args
    clip = bound(clipped)
    rounded = bound(clip.args[0]) if is_op(clip, "relax.clip") else None
    divided = bound(rounded.args[0]) if is_op(rounded, "relax.round") else None
    if not (is_op(divided, "relax.divide") and divided.args[1].same_as(scale)
            and [float(b.value) for b in clip.args[1:]] == [-INT8_MAX, INT8_MAX]):
        return None
    return clipped, scale


def _reshaped_rounding(x: relax.Expr, bound: Bound) -> tuple[relax.Expr, relax.Expr] | None:
    """int8_rounding's (integers, s) when `x` is a reshape of an int8_rounding (a layer's
    input flattened to rows)."""
    reshaped = bound(x)
    return int8_rounding(reshaped.args[0], bound) if is_op(reshaped, "relax.reshape") else None


def reference_rounding(x: relax.Expr, bound: Bound) -> tuple[relax.Expr, relax.Expr] | None:
    """(xq, scale) when `x` (rows, K) is reshape(int8_rounding) with one scale per row, as the
    reference rounds a linear layer's input: the integers cast to int8 (before the reshape, so
    the cast fuses into the rounding's kernel) and reshaped to (rows, K), the scale to (rows, 1)."""
    rounding = _reshaped_rounding(x, bound)
    if rounding is None:
        return None
    clipped, scale = rounding
    scale_shape = scale.ty.shape.values
    if not (len(scale_shape) >= 1 and int(scale_shape[-1]) == 1):
        return None
    rows, k = x.ty.shape.values
    return (relax.op.reshape(relax.op.astype(clipped, "int8"), [rows, k]),
            relax.op.reshape(scale, [rows, 1]))


def rounded_input(x: relax.Expr, bound: Bound) -> relax.Expr | None:
    """x0 when `x` (rows, K) is reshape(int8_rounding(x0)) at x0's own per-row scale,
    max(max|row|, TINY) / 127: the reference's dynamic rounding of a layer's input, which
    `quantize_rows` computes from x0 to the same bits."""
    rounding = _reshaped_rounding(x, bound)
    if rounding is None:
        return None
    clipped, scale = rounding
    source = bound(bound(bound(clipped).args[0]).args[0]).args[0]      # clip(round(x0 / s))
    divided = bound(scale)
    clamped = bound(divided.args[0]) if is_op(divided, "relax.divide") else None
    peak = bound(clamped.args[0]) if is_op(clamped, "relax.clip") else None
    magnitude = bound(peak.args[0]) if is_op(peak, "relax.max") else None
    ndim = source.ty.ndim
    if not (is_op(magnitude, "relax.abs") and magnitude.args[0].same_as(source)
            and peak.attrs.keepdims and peak.attrs.axis is not None
            and [int(a) % ndim for a in peak.attrs.axis] == [ndim - 1]
            and float(clamped.args[1].value) == TINY
            and scalar_constant(divided.args[1]) == INT8_MAX):
        return None
    return source


class Int8KernelRewriter(FunctionRewriter):
    """A rewrite into the int8 matmul kernels of the target's dot ISA."""

    def __init__(self, mod: tvm.IRModule, target: Target, choices: KernelChoices | None = None):
        super().__init__(mod, choices)
        self.isa: DotIsa = dot_isa(target)
        self.amx = has_amx(target)
        self.unit: VectorUnit = vector_unit(target)

    def quantize_rows(self, x: relax.Expr, rows: tirx.Expr) -> tuple[relax.Var, relax.Var]:
        """(xq (rows, K) int8, x_scale (rows, 1)): x (..., K) rounded to int8 per row at
        x_scale = max|row| / 127, by the target's compile/kernels/quantize.py kernel."""
        k = int(x.ty.shape.values[-1])
        kernel = self._kernel(f"quantize_rows_{self.unit.lanes}_k{k}",
                              lambda: quantize_rows_kernel(self.unit, k))
        rounded = self.builder_.emit(relax.call_tir(
            kernel, [relax.op.reshape(x, [rows, k])],
            [relax.TensorType([rows, k], "int8"), relax.TensorType([rows, 1], "float32")]))
        return (self.builder_.emit(relax.TupleGetItem(rounded, 0)),
                self.builder_.emit(relax.TupleGetItem(rounded, 1)))

    def int8_matmul(self, xq: relax.Expr, x_scale: relax.Expr, wq: relax.Expr,
                    scale: relax.Expr, rows: tirx.Expr) -> relax.Expr:
        """(rows, n) float32 = xq (rows, k) int8 @ wq (n, k) int8 ^T, times x_scale (rows, 1)
        and scale (n,); the caller checked `self.isa.supports(k)`."""
        n, k = (int(d) for d in wq.ty.shape.values)
        blocks, groups, lanes, group = self.isa.packed_shape(n, k)
        if blocks * lanes != n:
            wq = relax.op.nn.pad(wq, [0, blocks * lanes - n, 0, 0])
        packed = self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(wq, [blocks, lanes, groups, group]), [0, 2, 1, 3]))
        kernel = self._tunable(int8_matmul_tunable(self.isa, n, k, self.amx))
        return relax.call_tir(kernel, [xq, packed, x_scale, scale, *identity_epilogue(n)],
                              relax.TensorType([rows, n], "float32"))

    def int8_conv(self, columns: relax.Expr, x_scale: relax.Expr, wq: relax.Expr,
                  order: list[int], scale: relax.Expr, conv: relax.Call) -> relax.Expr:
        """`conv`'s output from its im2col rows `columns` (rows, K) int8 at `x_scale`
        (rows, 1) and its int8 weight `wq`, whose axes `order` puts in the columns' order."""
        rows, k = columns.ty.shape.values
        matrix = self.builder_.emit(relax.op.reshape(relax.op.permute_dims(wq, order),
                                                     [int(wq.ty.shape.values[0]), k]))
        return relax.op.reshape(self.int8_matmul(columns, x_scale, matrix, scale, rows),
                                conv.ty.shape)


@mutator
class _Rewriter(Int8KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        weight = linear_weight(call, self._bound)
        int8 = None if weight is None else int8_weight(weight, self._bound)
        if int8 is None:
            return call
        wq, scale = int8
        if not self.isa.supports(int(wq.ty.shape.values[1])):
            return call
        x = call.args[0]
        rows = x.ty.shape.values[0]
        source = rounded_input(x, self._bound)
        rounding = None if source is not None else reference_rounding(x, self._bound)
        if rounding is None:
            xq, x_scale = self.quantize_rows(x if source is None else source, rows)
        else:   # a static scale: its integers as they are
            xq, x_scale = rounding
            xq = self.builder_.emit(xq)
        return self.int8_matmul(xq, x_scale, wq, scale, rows)


@tvm.transform.module_pass(opt_level=0, name="Int8Matmul")
class Int8Matmul(KernelPass):
    """Linear layers on int8 weights -> the int8 kernels."""

    rewriter = _Rewriter
