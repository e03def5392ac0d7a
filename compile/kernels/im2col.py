"""im2col of a channels-last image: the rows of a convolution as a matmul's input.

    columns[oh * OW + ow, (i * KW + j) * C + c] = x[0, oh * SH + i, ow * SW + j, c]

x is (1, H, W, C) with H symbolic (frames); OW, C, the kernel and the strides are fixed. In
channels-last order each (row, tap) is one contiguous run of C values, copied as one vector;
the NCHW im2col it replaces gathered every value on its own through a chain of strided slices
and a stack (0.5 ms for the subsampling's int8 conv on a 5 s utterance).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

# Relax's OpPatternKind kOpaque: FuseOps leaves the kernel alone. Fused with the int8 rounding
# before it, the rounding would run once per tap (9 / 4 times per value) and FuseTIR cannot
# map the kernel's free image height.
OPAQUE = 8


def im2col_kernel(dtype: str, channels: int, width: int, kernel: tuple[int, int],
                  strides: tuple[int, int]) -> tirx.PrimFunc:
    """(x (1, H, width, channels) dtype) -> (OH * OW, KH * KW * channels) dtype, OH from the
    output's row count."""
    (kh, kw), (sh, sw) = kernel, strides
    out_w = (width - kw) // sw + 1
    k = kh * kw * channels

    @T.prim_func(private=True, s_tir=True)
    def im2col(x_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        height, rows = T.int64(), T.int64()
        x = T.match_buffer(x_handle, (1, height, width, channels), dtype)
        out = T.match_buffer(out_handle, (rows, k), dtype)
        with T.sblock("root"):   # Relax's reshape detection requires a root block
            for row in range(rows):
                for i in T.unroll(kh):
                    for j in T.unroll(kw):
                        for c in T.vectorized(channels):
                            out[row, (i * kw + j) * channels + c] = x[
                                0, row // out_w * sh + i, row % out_w * sw + j, c]

    return im2col
