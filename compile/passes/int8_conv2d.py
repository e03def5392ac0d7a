"""Convolutions on int8 weights become im2col + the int8 matmul kernels.

Pattern (compile.compressed_import.Int8Conv2d on the reference's per-tensor input rounding):

    conv2d(clip(round(x / s), -127, 127) * s,  float(wq (O, C, KH, KW) int8) * reshape(scale, (O, 1, 1, 1)))
    NCHW / OIHW, batch 1, one group, no padding or dilation, s one scalar

Rewrite:

    xq      = int8(clip(round(x / s), -127, 127))              the reference's own integers
    columns = the KH * KW strided taps of xq as (OH * OW, C * KH * KW)    im2col, in int8
    out     = int8 kernel(columns, wq as (O, C * KH * KW), s per row, scale)   -> (OH * OW, O)
              back to (1, O, OH, OW)

The subsampling's second conv (32 -> 32 channels, 3x3, stride 2) is the model's one such layer:
run in fp32 on the dequantized weight it was the encoder's second-heaviest kernel.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.passes.int8_matmul import (Bound, Int8KernelPass, Int8KernelRewriter,
                                                int8_rounding, is_op)


def conv_weight(weight: relax.Expr, bound: Bound) -> tuple[relax.Expr, relax.Expr] | None:
    """(wq, scale) when `weight` is float(wq (O, C, KH, KW) int8) * reshape(scale (O,))."""
    if not is_op(weight, "relax.multiply"):
        return None
    values, scale = (bound(arg) for arg in weight.args)
    if not (is_op(values, "relax.astype") and is_op(scale, "relax.reshape")):
        return None
    wq, scale = values.args[0], scale.args[0]
    if wq.ty.dtype != "int8" or len(scale.ty.shape.values) != 1:
        return None
    return wq, scale


def _plain(attrs: tvm.ir.Attrs) -> bool:
    """NCHW / OIHW, one group, no padding or dilation."""
    return (attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW"
            and attrs.out_layout == "NCHW" and int(attrs.groups) == 1
            and all(int(p) == 0 for p in attrs.padding)
            and all(int(d) == 1 for d in attrs.dilation))


@mutator
class _Rewriter(Int8KernelRewriter):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        if not is_op(call, "relax.nn.conv2d") or not _plain(call.attrs):
            return super().visit_call_(call)
        _, _, out_h, out_w = call.ty.shape.values
        call = super().visit_call_(call)
        weight = conv_weight(self._bound(call.args[1]), self._bound)
        rounding = int8_rounding(call.args[0], self._bound)
        batch = call.args[0].ty.shape.values[0]
        if (weight is None or rounding is None or rounding[1].ty.shape.values
                or not (isinstance(batch, tvm.tirx.IntImm) and int(batch) == 1)):
            return call   # (not one scale per tensor, or a batch)
        wq, scale = weight
        out_channels, channels, kh, kw = (int(d) for d in wq.ty.shape.values)
        k = channels * kh * kw
        if not self.isa.supports(out_channels, k):
            return call
        integers, x_scale = rounding
        stride_h, stride_w = (int(s) for s in call.attrs.strides)
        xq = self.builder_.emit(relax.op.astype(integers, "int8"))
        taps = [relax.op.strided_slice(
                    xq, axes=[2, 3], begin=[i, j],
                    end=[i + stride_h * (out_h - 1) + 1, j + stride_w * (out_w - 1) + 1],
                    strides=[stride_h, stride_w], assume_inbound=True)
                for i in range(kh) for j in range(kw)]
        rows = out_h * out_w
        columns = self.builder_.emit(relax.op.reshape(relax.op.permute_dims(   # (OH, OW, C, taps)
            relax.op.stack(taps, axis=2), [0, 3, 4, 1, 2]), [rows, k]))
        row_scales = self.builder_.emit(relax.op.broadcast_to(
            relax.op.reshape(x_scale, [1, 1]), [rows, 1]))
        matrix = self.builder_.emit(relax.op.reshape(wq, [out_channels, k]))
        out = self.int8_matmul(columns, row_scales, matrix, scale, rows)
        return relax.op.permute_dims(relax.op.reshape(out, [1, out_h, out_w, out_channels]),
                                     [0, 3, 1, 2])


@tvm.transform.module_pass(opt_level=0, name="Int8Conv2d")
class Int8Conv2d(Int8KernelPass):
    """Convolutions on int8 weights -> im2col + the int8 kernels."""

    rewriter = _Rewriter
