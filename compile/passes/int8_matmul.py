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

from collections.abc import Callable

import tvm
from tvm import relax, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator
from tvm.target import Target

from tinyasr.compile.epilogue import identity_epilogue
from tinyasr.compile.fp32_kernels import VectorUnit, vector_unit
from tinyasr.compile.im2col_kernels import im2col_kernel
from tinyasr.compile.int8_kernels import DotIsa, dot_isa, int8_matmul_kernel
from tinyasr.compile.quantize_kernels import INT8_MAX, TINY, quantize_rows_kernel



def is_op(expr: relax.Expr, name: str) -> bool:
    return isinstance(expr, relax.Call) and expr.op == tvm.ir.Op.get(name)


Bound = Callable[[relax.Expr], relax.Expr]   # a variable -> the expression bound to it


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
    PyTorch reference applies to a layer's input (tinyasr.model.quantize.fake_quantize)."""
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


def scalar_constant(expr: relax.Expr) -> float | None:
    """The value of a scalar constant, else None."""
    if isinstance(expr, tvm.ir.expr.GenericConst) and expr.value.numpy().size == 1:
        return float(expr.value.numpy())
    return None


class FunctionRewriter(PyExprMutator):
    """Base of the rewrites: visits every Relax function of `mod`; each kernel added once."""

    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.mod, self.kernels = mod, {}

    def transform(self) -> tvm.IRModule:
        for gvar, function in self.mod.functions.items():
            if isinstance(function, relax.Function):
                self.before_function(function)
                self.builder_.update_func(gvar, self.visit_expr(function))
        return self.builder_.get()

    def before_function(self, function: relax.Function) -> None:
        """Called with each function, unchanged, before it is visited (a rewrite that plans
        on whole-function facts, such as use counts, overrides it)."""

    def _bound(self, expr: relax.Expr) -> relax.Expr:
        """The expression bound to a variable (through aliases: `lv5 = lv3`); a function
        parameter or any other expression is itself."""
        while isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            if bound is None:
                return expr
            expr = bound
        return expr

    def _kernel(self, name: str, make: Callable[[], tirx.PrimFunc]) -> relax.GlobalVar:
        """The kernel `name` (its name says its every parameter), made on first use."""
        if name not in self.kernels:
            self.kernels[name] = self.builder_.add_func(make(), name)
        return self.kernels[name]

    def conv_columns(self, x: relax.Expr, conv: relax.Call) -> relax.Var:
        """The im2col (OH * OW, KH * KW * C) of `conv`'s channels-last input `x` (x's dtype),
        in the order of its flattened OHWI weight."""
        width, channels = (int(d) for d in x.ty.shape.values[2:])
        _, kh, kw, _ = (int(d) for d in conv.args[1].ty.shape.values)
        strides = tuple(int(s) for s in conv.attrs.strides)
        _, out_h, out_w, _ = conv.ty.shape.values
        dtype = x.ty.dtype
        kernel = self._kernel(
            f"im2col_{dtype}_{channels}x{width}_k{kh}x{kw}_s{strides[0]}x{strides[1]}",
            lambda: im2col_kernel(dtype, channels, width, (kh, kw), strides))
        return self.builder_.emit(relax.call_tir(
            kernel, [x], relax.TensorType([out_h * out_w, kh * kw * channels], dtype)))


def plain_channels_last(conv: relax.Call) -> bool:
    """A conv2d in NHWC / OHWI (as ConvertLayout leaves them), batch 1, one group, no padding
    or dilation: what im2col + a matmul kernel computes."""
    attrs = conv.attrs
    batch = conv.args[0].ty.shape.values[0]
    return (attrs.data_layout == "NHWC" and attrs.kernel_layout == "OHWI"
            and attrs.out_layout == "NHWC" and int(attrs.groups) == 1
            and all(int(p) == 0 for p in attrs.padding)
            and all(int(d) == 1 for d in attrs.dilation)
            and isinstance(batch, tvm.tirx.IntImm) and int(batch) == 1)


class Int8KernelRewriter(FunctionRewriter):
    """A rewrite into the int8 matmul kernels of the target's dot ISA."""

    def __init__(self, mod: tvm.IRModule, target: Target):
        super().__init__(mod)
        self.isa: DotIsa = dot_isa(target)
        self.unit: VectorUnit = vector_unit(target)

    def quantize_rows(self, x: relax.Expr, rows: tirx.PrimExpr) -> tuple[relax.Var, relax.Var]:
        """(xq (rows, K) int8, x_scale (rows, 1)): x (..., K) rounded to int8 per row at
        x_scale = max|row| / 127, by the target's compile/quantize_kernels.py kernel."""
        k = int(x.ty.shape.values[-1])
        kernel = self._kernel(f"quantize_rows_{self.unit.lanes}_k{k}",
                              lambda: quantize_rows_kernel(self.unit, k))
        rounded = self.builder_.emit(relax.call_tir(
            kernel, [relax.op.reshape(x, [rows, k])],
            [relax.TensorType([rows, k], "int8"), relax.TensorType([rows, 1], "float32")]))
        return (self.builder_.emit(relax.TupleGetItem(rounded, 0)),
                self.builder_.emit(relax.TupleGetItem(rounded, 1)))

    def int8_matmul(self, xq: relax.Expr, x_scale: relax.Expr, wq: relax.Expr,
                    scale: relax.Expr, rows: tirx.PrimExpr) -> relax.Expr:
        """(rows, n) float32 = xq (rows, k) int8 @ wq (n, k) int8 ^T, times x_scale (rows, 1)
        and scale (n,); the caller checked `self.isa.supports(k)`."""
        n, k = (int(d) for d in wq.ty.shape.values)
        blocks, groups, lanes, group = self.isa.packed_shape(n, k)
        if blocks * lanes != n:
            wq = relax.op.nn.pad(wq, [0, blocks * lanes - n, 0, 0])
        packed = self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(wq, [blocks, lanes, groups, group]), [0, 2, 1, 3]))
        kernel = self._kernel(f"int8_matmul_{self.isa.name.replace('-', '_')}_{n}x{k}",
                              lambda: int8_matmul_kernel(self.isa, n, k))
        return relax.call_tir(kernel, [xq, packed, x_scale, scale, *identity_epilogue(n)],
                              relax.TensorType([rows, n], "float32"))


@mutator
class _Rewriter(Int8KernelRewriter):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
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


class KernelPass:
    """A module pass running `rewriter`, a FunctionRewriter made for `target` (whose kernels
    it picks: the dot ISA, the vector unit)."""

    rewriter: type[FunctionRewriter]

    def __init__(self, target: Target):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return self.rewriter(mod, self.target).transform()


@tvm.transform.module_pass(opt_level=0, name="Int8Matmul")
class Int8Matmul(KernelPass):
    """Linear layers on int8 weights -> the int8 kernels."""

    rewriter = _Rewriter
