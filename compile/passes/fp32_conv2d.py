"""fp32 convolutions on a weight become im2col + the fp32 matmul kernels.

Pattern (after the layout phase made convs channels-last):

    conv2d(x (1, H, W, C) f32, W (O, KH, KW, C) an fp32 weight)   NHWC / OHWI, batch 1, one
                                                                  group, no padding or dilation
Rewrite:

    columns = im2col of x, (OH * OW, KH * KW * C)       compile/im2col_kernels.py
    out     = fp32 kernel(columns, W as (KH * KW * C, O)) = (1, OH, OW, O), channels-last

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


@mutator
class _Rewriter(Fp32KernelRewriter):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
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


@tvm.transform.module_pass(opt_level=0, name="Fp32Conv2d")
class Fp32Conv2d(KernelPass):
    """Channels-last fp32 convolutions on weights -> im2col + the fp32 kernels."""

    rewriter = _Rewriter
