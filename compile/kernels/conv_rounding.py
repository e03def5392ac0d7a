"""A small convolution whose output is only rounded to int8 at one scale for the whole tensor,
computed twice instead of stored in fp32.

    x (1, H, W, C) f32 NHWC, weight (K, N) f32 (K = kh * kw * C, row (i * kw + j) * C + c),
    bias (N,) f32; y[0, oh, ow, n] = act(sum_k x[0, sh*oh + i, sw*ow + j, c] * weight[k, n]
                                         + bias[n]),   act = ReLU or none
        conv_abs_max   () f32:                 max |y| over the whole output
        conv_rounded   (1, OH, OW, N) int8:    clip(round(y / scale), -127, 127)

The SAN-M subsampling's first convolution (1 -> 32 channels, 9 taps) feeds an int8 convolution
whose input is rounded at max|y| / 127: stored in fp32, y is the encoder's largest tensor
(5 MB for 20 s, and its im2col 1.4 MB); recomputing it costs 9 multiply-adds per output.
Both kernels sum the taps in order and add the bias last, as the im2col + matmul kernel they
replace does, so they see the same y.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import VectorUnit, multiply_add
from tinyasr.compile.kernels.im2col import OPAQUE


def conv_rounding_supported(unit: VectorUnit, channels_out: int) -> bool:
    """Whether the output channels are whole vectors of the unit."""
    return channels_out % unit.lanes == 0


@dataclass(frozen=True)
class _Conv:
    """What both kernels are shaped by."""
    unit: VectorUnit
    width: int
    channels: int
    channels_out: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    relu: bool

    @property
    def out_width(self) -> int:
        return (self.width - self.kernel[1]) // self.strides[1] + 1

    @property
    def vectors(self) -> int:
        return self.channels_out // self.unit.lanes

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.channels


def _conv_vector(conv: _Conv):
    """The macro leaving y[0, oh, ow, v*L : (v+1)*L] in acc[0 : L]."""
    lanes, (kh, kw), (sh, sw) = conv.unit.lanes, conv.kernel, conv.strides
    channels, relu = conv.channels, conv.relu

    @T.macro
    def conv_vector(x, weight, bias, acc, oh, ow, v):
        acc[T.ramp(0, 1, lanes)] = T.broadcast(T.float32(0), lanes)
        for i in range(kh):
            for j in range(kw):
                for c in range(channels):
                    multiply_add(acc, 0, lanes, x[0, sh * oh + i, sw * ow + j, c],
                                 weight.vload([(i * kw + j) * channels + c, v * lanes],
                                              f"float32x{lanes}"))
        acc[T.ramp(0, 1, lanes)] = (acc[T.ramp(0, 1, lanes)]
                                    + bias.vload([v * lanes], f"float32x{lanes}"))
        if relu:
            acc[T.ramp(0, 1, lanes)] = T.max(acc[T.ramp(0, 1, lanes)],
                                             T.broadcast(T.float32(0), lanes))

    return conv_vector


def conv_abs_max_kernel(unit: VectorUnit, width: int, channels: int, channels_out: int,
                        kernel: tuple[int, int], strides: tuple[int, int],
                        relu: bool) -> tirx.PrimFunc:
    """(x, weight, bias) -> () float32; H symbolic (see the module docstring)."""
    conv = _Conv(unit, width, channels, channels_out, kernel, strides, relu)
    lanes, (kh, _), (sh, _) = unit.lanes, kernel, strides
    out_w, vectors, taps = conv.out_width, conv.vectors, conv.taps
    conv_vector = _conv_vector(conv)

    @T.prim_func(private=True)
    def conv_abs_max(x_handle: T.handle, weight_handle: T.handle, bias_handle: T.handle,
                     out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        height = T.int64()
        x = T.match_buffer(x_handle, (1, height, width, channels), "float32")
        weight = T.match_buffer(weight_handle, (taps, channels_out), "float32")
        bias = T.match_buffer(bias_handle, (channels_out,), "float32")
        out = T.match_buffer(out_handle, (), "float32")
        acc = T.alloc_buffer((lanes,), "float32", scope="local")
        peak = T.alloc_buffer((lanes,), "float32", scope="local")
        peak[T.ramp(0, 1, lanes)] = T.broadcast(T.float32(0), lanes)
        for oh, ow in T.grid((height - kh) // sh + 1, out_w):
            for v in range(vectors):
                conv_vector(x, weight, bias, acc, oh, ow, v)
                peak[T.ramp(0, 1, lanes)] = T.max(peak[T.ramp(0, 1, lanes)],
                                                  T.fabs(acc[T.ramp(0, 1, lanes)]))
        out[()] = T.float32(0)
        for lane in range(lanes):
            out[()] = T.max(out[()], peak[lane])

    return conv_abs_max


def conv_rounded_kernel(unit: VectorUnit, width: int, channels: int, channels_out: int,
                        kernel: tuple[int, int], strides: tuple[int, int],
                        relu: bool) -> tirx.PrimFunc:
    """(x, weight, bias, scale ()) -> (1, OH, OW, N) int8; H symbolic."""
    conv = _Conv(unit, width, channels, channels_out, kernel, strides, relu)
    lanes, (kh, _), (sh, _) = unit.lanes, kernel, strides
    out_w, vectors, taps = conv.out_width, conv.vectors, conv.taps
    conv_vector = _conv_vector(conv)

    @T.prim_func(private=True)
    def conv_rounded(x_handle: T.handle, weight_handle: T.handle, bias_handle: T.handle,
                     scale_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        height = T.int64()
        x = T.match_buffer(x_handle, (1, height, width, channels), "float32")
        weight = T.match_buffer(weight_handle, (taps, channels_out), "float32")
        bias = T.match_buffer(bias_handle, (channels_out,), "float32")
        scale = T.match_buffer(scale_handle, (), "float32")
        out = T.match_buffer(out_handle, (1, (height - kh) // sh + 1, out_w, channels_out),
                             "int8")
        acc = T.alloc_buffer((lanes,), "float32", scope="local")
        for oh, ow in T.grid((height - kh) // sh + 1, out_w):
            for v in range(vectors):
                conv_vector(x, weight, bias, acc, oh, ow, v)
                out.vstore([0, oh, ow, v * lanes], T.Cast(f"int8x{lanes}", T.max(T.min(
                    T.round(acc[T.ramp(0, 1, lanes)] / T.broadcast(scale[()], lanes)),
                    T.broadcast(T.float32(127), lanes)), T.broadcast(T.float32(-127), lanes))))

    return conv_rounded
