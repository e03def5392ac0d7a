"""conv1d on int8 weights becomes im2col + per-row int8 rounding + the int8 matmul kernels.

Pattern (compile.compressed_import.Int8Conv1d: Whisper's two front convolutions under
`compile --int8`, fp32 activations; after the layout phase made the conv channels-last):

    conv1d(x (1, W, C) f32, permute(float(wq (O, C, K) int8) * reshape(scale, (O, 1, 1)), WIO))
    NWC / WIO, batch 1, one group, no dilation, static width, padding allowed

Rewrite:

    columns = im2col of x padded, (OW, K * C) f32           FunctionRewriter.conv1d_columns
    xq, s   = columns rounded to int8 per row                compile/kernels/quantize.py
    out     = int8 kernel(xq, wq as (O, K * C), s, scale) = (1, OW, O), channels-last

as Int8Matmul rounds a linear layer's input: each output frame's K * C inputs get their own
scale. Whisper tiny.en's second conv (1500 x 1152 -> 384) was, in fp32, the int8 encoder's
heaviest kernel after the attention.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.passes.fp32_conv2d import plain_conv1d
from tinyasr.compile.passes.int8_conv2d import conv_weight
from tinyasr.compile.passes.int8_matmul import Int8KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op

WIO = [2, 1, 0]        # OIW -> WIO
OIW_TO_KC = [0, 2, 1]  # the weight's (O, C, K) -> (O, K, C): the columns' order


@mutator
class _Rewriter(Int8KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not (is_op(call, "relax.nn.conv1d") and plain_conv1d(call)
                and call.args[0].ty.dtype == "float32" and call.ty.dtype == "float32"):
            return call
        weight = conv_weight(self._bound(call.args[1]), self._bound, WIO)
        if weight is None:
            return call
        wq, scale = weight
        _, channels, taps = (int(d) for d in wq.ty.shape.values)
        if not self.isa.supports(taps * channels):
            return call
        columns = self.conv1d_columns(call)
        xq, x_scale = self.quantize_rows(columns, columns.ty.shape.values[0])
        return self.int8_conv(xq, x_scale, wq, OIW_TO_KC, scale, call)


@tvm.transform.module_pass(opt_level=0, name="Int8Conv1d")
class Int8Conv1d(KernelPass):
    """Channels-last conv1d on int8 weights -> im2col + the int8 kernels."""

    rewriter = _Rewriter
