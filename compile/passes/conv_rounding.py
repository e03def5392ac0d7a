"""An fp32 convolution whose output is only rounded to int8 at one scale (the input of an int8
convolution) is computed twice, by two kernels, instead of stored.

Pattern (model/network/int8.py's rounding of an int8 layer's input, on a convolution's output):

    y = relu(add(conv2d(x (1, H, W, C), w (N, kh, kw, C)), b))    NHWC / OHWI, batch 1, no
                                                                    padding; relu optional
    s = clip(max(abs(y)), eps, inf) / 127
    q = astype(clip(round(divide(y, s)), -127, 127), int8)

Rewrite:

    max(abs(y)) -> call_tir(conv_abs_max, x, w as (K, N), b as (N,))
    q           -> call_tir(conv_rounded, x, w as (K, N), b as (N,), s)
                                                 compile/kernels/conv_rounding.py

y is then read by nothing and goes, with the im2col and matmul the convolution would have
become: for the SAN-M encoder's first convolution, 7.5 MB of fp32 output and 2.1 MB of im2col
at the 30 s bound, the largest storage the memory planner had. Run it before Fp32Conv2d.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator
from tvm.target import Target

from tinyasr.compile.kernels.conv_rounding import (
    conv_abs_max_kernel,
    conv_rounded_kernel,
    conv_rounding_supported,
)
from tinyasr.compile.kernels.fp32 import VectorUnit, vector_unit
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.rewriting import (
    FunctionRewriter,
    KernelPass,
    is_op,
    plain_channels_last,
    prim_number,
)

INT8_MAX = 127


@mutator
class _Rewriter(FunctionRewriter):
    def __init__(self, mod: tvm.IRModule, target: Target, choices: KernelChoices | None = None):
        super().__init__(mod, choices)
        self.unit: VectorUnit = vector_unit(target)

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        rewritten = None
        if is_op(call, "relax.max") and call.ty.ndim == 0:
            absolute = self._bound(call.args[0])
            if is_op(absolute, "relax.abs"):
                rewritten = self._conv_call(absolute.args[0], conv_abs_max_kernel, "abs_max",
                                            [], relax.TensorType([], "float32"))
        elif is_op(call, "relax.astype") and str(call.attrs.dtype) == "int8":
            rewritten = self._rounded(call)
        return call if rewritten is None else rewritten

    def _rounded(self, cast: relax.Call) -> relax.Expr | None:
        clip = self._bound(cast.args[0])
        if not (is_op(clip, "relax.clip") and prim_number(clip.args[1]) == -INT8_MAX
                and prim_number(clip.args[2]) == INT8_MAX):
            return None
        rounded = self._bound(clip.args[0])
        divided = self._bound(rounded.args[0]) if is_op(rounded, "relax.round") else None
        if not (is_op(divided, "relax.divide") and divided.args[1].ty.ndim == 0):
            return None
        return self._conv_call(divided.args[0], conv_rounded_kernel, "rounded",
                               [divided.args[1]], cast.ty)

    def _conv_call(self, y: relax.Expr, make, role: str, extra: list[relax.Expr],
                   out_ty: relax.Type) -> relax.Expr | None:
        """call_tir of the kernel `make` on the convolution `y` is the (activated) output of,
        with `extra` inputs after x, weight and bias; None when `y` is not one."""
        expr, relu = self._bound(y), False
        if is_op(expr, "relax.nn.relu"):
            expr, relu = self._bound(expr.args[0]), True
        conv = self._bound(expr.args[0]) if is_op(expr, "relax.add") else None
        if not (is_op(conv, "relax.nn.conv2d") and plain_channels_last(conv)
                and conv.ty.dtype == "float32"):
            return None
        x, weight, bias = conv.args[0], conv.args[1], expr.args[1]
        out_ch, kh, kw, channels = (int(d) for d in weight.ty.shape.values)
        width = x.ty.shape.values[2]
        if not (isinstance(width, tvm.tirx.IntImm) and conv_rounding_supported(self.unit, out_ch)
                and [int(d) for d in bias.ty.shape.values] in ([out_ch], [1, 1, 1, out_ch])):
            return None
        strides = tuple(int(s) for s in conv.attrs.strides)
        taps = kh * kw * channels
        columns = self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(weight, [out_ch, taps]), [1, 0]))   # (K, N): weight-only, lifted
        flat_bias = self.builder_.emit(relax.op.reshape(bias, [out_ch]))
        params = (int(width), channels, out_ch, (kh, kw), strides, relu)
        name = (f"conv_{role}_{self.unit.lanes}_{channels}x{int(width)}_k{kh}x{kw}"
                f"_s{strides[0]}x{strides[1]}_n{out_ch}{'_relu' if relu else ''}")
        kernel = self._kernel(name, lambda: make(self.unit, *params))
        return relax.call_tir(kernel, [x, columns, flat_bias, *extra], out_ty)


@tvm.transform.module_pass(opt_level=0, name="ConvRounding")
class ConvRounding(KernelPass):
    """A convolution only rounded to int8 at one scale -> two kernels recomputing it."""

    rewriter = _Rewriter
