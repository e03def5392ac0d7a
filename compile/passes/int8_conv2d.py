"""Convolutions on int8 weights become im2col + the int8 matmul kernels.

Pattern (compile.compressed_import.Int8Conv2d on the reference's per-tensor input rounding,
after the layout phase made the conv channels-last; the rounding may be permuted to NHWC):

    conv2d(clip(round(x / s), -127, 127) * s,  permute(float(wq (O, C, KH, KW) int8)
                                                       * reshape(scale, (O, 1, 1, 1)), OHWI))
    NHWC / OHWI, batch 1, one group, no padding or dilation, s one scalar

Rewrite:

    xq      = int8(clip(round(x / s), -127, 127))              the reference's own integers
    columns = im2col of xq, (OH * OW, KH * KW * C) int8         compile/kernels/im2col.py
    out     = int8 kernel(columns, wq as (O, KH * KW * C), s per row, scale)   -> (OH * OW, O)
              = (1, OH, OW, O): already the conv's channels-last output

The subsampling's second conv (32 -> 32 channels, 3x3, stride 2) is the model's one such layer:
run in fp32 on the dequantized weight it was the encoder's second-heaviest kernel.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.passes.int8_matmul import Int8KernelRewriter, int8_rounding
from tinyasr.compile.passes.rewriting import Bound, KernelPass, is_op, plain_channels_last

OHWI = [0, 2, 3, 1]   # OIHW -> OHWI


def conv_weight(weight: relax.Expr, bound: Bound,
                order: list[int] = OHWI) -> tuple[relax.Expr, relax.Expr] | None:
    """(wq, scale) when `weight` is permute(float(wq (O, C, KH, KW) int8) * reshape(scale (O,)),
    `order`) (a conv1d's: wq (O, C, K), order WIO)."""
    if not (is_op(weight, "relax.permute_dims")
            and [int(axis) for axis in weight.attrs.axes] == order):
        return None
    dequantized = bound(weight.args[0])
    if not is_op(dequantized, "relax.multiply"):
        return None
    values, scale = (bound(arg) for arg in dequantized.args)
    if not (is_op(values, "relax.astype") and is_op(scale, "relax.reshape")):
        return None
    wq, scale = values.args[0], scale.args[0]
    if wq.ty.dtype != "int8" or len(scale.ty.shape.values) != 1:
        return None
    return wq, scale


@mutator
class _Rewriter(Int8KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        if not is_op(op, "relax.nn.conv2d") or not plain_channels_last(op):
            return super().visit_call_(op)
        call = super().visit_call_(op)
        weight = conv_weight(self._bound(call.args[1]), self._bound)
        x, layout = call.args[0], None
        permuted = self._bound(x)
        if is_op(permuted, "relax.permute_dims"):   # an input rounded in NCHW
            x, layout = permuted.args[0], [int(a) for a in permuted.attrs.axes]
        rounding = int8_rounding(x, self._bound)
        if weight is None or rounding is None or rounding[1].ty.shape.values:
            return call   # (not one scale per tensor)
        wq, scale = weight
        _, channels, kh, kw = (int(d) for d in wq.ty.shape.values)
        if not self.isa.supports(kh * kw * channels):
            return call
        integers, x_scale = rounding
        if layout is not None:
            integers = relax.op.permute_dims(integers, layout)
        xq = self.builder_.emit(relax.op.astype(integers, "int8"))
        columns = self.conv_columns(xq, call)
        row_scales = self.builder_.emit(relax.op.broadcast_to(
            relax.op.reshape(x_scale, [1, 1]), [columns.ty.shape.values[0], 1]))
        return self.int8_conv(columns, row_scales, wq, OHWI, scale, call)


@tvm.transform.module_pass(opt_level=0, name="Int8Conv2d")
class Int8Conv2d(KernelPass):
    """Channels-last convolutions on int8 weights -> im2col + the int8 kernels."""

    rewriter = _Rewriter
