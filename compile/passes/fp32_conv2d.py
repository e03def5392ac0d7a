"""fp32 convolutions on a weight become im2col + the fp32 matmul kernels.

Pattern (after the layout phase made convs channels-last):

    conv2d(x (1, H, W, C) f32, W (O, KH, KW, C) an fp32 weight)   NHWC / OHWI, batch 1, one
                                                                  group, no padding or dilation
Rewrite:

    columns = im2col of x, (OH * OW, KH * KW * C)       compile/kernels/im2col.py
    out     = fp32 kernel(columns, W as (KH * KW * C, O)) = (1, OH, OW, O), channels-last

and conv1d(x (1, W, C), W (K, C, O)) in NWC / WIO (Whisper's front convolutions, padding
allowed) as the same on x padded and seen as a (1, W, 1, C) image with a (K, 1) kernel.

The subsampling's first conv (1 -> 32 channels, 3x3, stride 2) ran TVM's default schedule at
0.45 ms on a 5 s utterance, its MetaSchedule replay no faster; as a 9-deep matmul (with
the bias and ReLU in the kernel's store) 0.11 ms, plus 0.04 ms of im2col.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op, plain_channels_last


def plain_conv1d(conv: relax.Call) -> bool:
    """A conv1d in NWC / WIO (as ConvertLayout leaves them), batch 1, one group, no dilation,
    static width (Whisper's two front convolutions, padded)."""
    attrs = conv.attrs
    batch, width, _ = conv.args[0].ty.shape.values
    return (attrs.data_layout == "NWC" and attrs.kernel_layout == "WIO"
            and attrs.out_layout == "NWC" and int(attrs.groups) == 1
            and all(int(d) == 1 for d in attrs.dilation)
            and all(isinstance(d, tvm.tirx.IntImm) for d in (batch, width)) and int(batch) == 1)


@mutator
class _Rewriter(Fp32KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if (is_op(call, "relax.nn.conv1d") and plain_conv1d(call)
                and call.args[0].ty.dtype == "float32" and call.ty.dtype == "float32"
                and self.is_fp32_weight(call.args[1])):
            return self._conv1d(call)
        if not (is_op(call, "relax.nn.conv2d") and plain_channels_last(call)
                and call.args[0].ty.dtype == "float32" and call.ty.dtype == "float32"
                and self.is_fp32_weight(call.args[1])):
            return call
        out_channels, kh, kw, channels = (int(d) for d in call.args[1].ty.shape.values)
        if not self.unit.supports(out_channels):
            return call
        columns = self.conv_columns(call.args[0], call)
        matrix = self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(call.args[1], [out_channels, kh * kw * channels]), [1, 0]))
        out = self.fp32_matmul(columns, matrix)
        return relax.op.reshape(out, call.ty.shape)

    def _conv1d(self, call: relax.Call) -> relax.Expr:
        """A channels-last conv1d as the conv2d of a one-column image: padded, im2col by the
        same kernel (taps along the height), then the fp32 kernel."""
        taps, channels, out_channels = (int(d) for d in call.args[1].ty.shape.values)
        if not self.unit.supports(out_channels):
            return call
        columns = self.conv1d_columns(call)
        matrix = self.builder_.emit(relax.op.reshape(call.args[1], [taps * channels,
                                                                   out_channels]))
        return relax.op.reshape(self.fp32_matmul(columns, matrix), call.ty.shape)


@tvm.transform.module_pass(opt_level=0, name="Fp32Conv2d")
class Fp32Conv2d(KernelPass):
    """Channels-last fp32 convolutions on weights -> im2col + the fp32 kernels."""

    rewriter = _Rewriter
