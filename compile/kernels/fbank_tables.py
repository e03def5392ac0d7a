"""The fbank's constant tables as kernels: the deployable computes them when it is loaded
instead of storing them (149 KiB of an int8 SAN-M's 1.15 MiB weights file).

Each kernel writes one table of model/network/frontend.py, the training and reference
definition, with the same float64 arithmetic in the same order (the libm calls cos, sin, log
and pow, then one rounding to float32), so each value is the reference's or, where a libm
differs from numpy's in the last float64 bit and that bit decides the float32 rounding, one
float32 ulp from it (tests/test_fbank_tables.py holds them to that):

    window      (400,)          Povey window: (0.5 - 0.5 cos(2 pi n / 399)) ^ 0.85
    inner_dft   (25, 32)        the 32-point DFT over n1 at k1 = 0..15, (cos, -sin) pairs;
                                k1 = 0's imaginary column holds k1 = 16's real one, cos(pi n1)
    outer_dft   (16, 32, 32)    per group its inputs (2 parts x n2) to its 16 bins' real,
                                then imaginary parts, the twiddle exp(-2 pi i n2 k / 512)
                                folded in
    mel_bank    (256, 80)       Kaldi's triangular mel filters, rows in the groups' bin order

A group's 16 bins (frontend._group_bins) and the weights (a, b) of its two inputs: group 0 has
bins 32, 64, .., 256 from input a = 1 and bins 16, 48, .., 240 from input b = 1; group g > 0
has bins g + 32 j (a = 1, b = i) and their mirror images 32 - g + 32 j (a = 1, b = -i).
"""

from __future__ import annotations

import math

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.model.network.framing import FRAME_LENGTH, SAMPLE_RATE
from tinyasr.model.network.frontend import (
    BINS_PER_GROUP,
    FFT_SIZE,
    GROUPS,
    INNER,
    MEL_DELTA,
    MEL_LOW,
    NUM_BINS,
    NUM_MEL_BINS,
    ROWS,
    STRIDE,
)

HALF = BINS_PER_GROUP // 2          # a group's bins from its first half of k1 (then mirrors)
TWO_PI = 2 * math.pi


def _f64(value):
    return T.Cast("float64", value)


def _group_bin(group, column):
    """The FFT bin of `column` in `group`, as frontend._group_bins orders them."""
    first_half = column < HALF
    return T.if_then_else(
        group == 0,
        T.if_then_else(first_half, INNER * (column + 1), GROUPS + INNER * (column - HALF)),
        T.if_then_else(first_half, group + INNER * column,
                       INNER - group + INNER * (column - HALF)))


@T.prim_func(private=True)
def fbank_window(window_handle: T.handle):
    T.func_attr({"tirx.noalias": True})
    window = T.match_buffer(window_handle, (FRAME_LENGTH,), "float32")
    for v in range(FRAME_LENGTH):
        hann = T.float64(0.5) - T.float64(0.5) * T.cos(
            T.float64(TWO_PI) * _f64(v) / T.float64(FRAME_LENGTH - 1))
        window[v] = T.Cast("float32", T.pow(hann, T.float64(0.85)))


@T.prim_func(private=True)
def fbank_inner_dft(inner_handle: T.handle):
    T.func_attr({"tirx.noalias": True})
    inner = T.match_buffer(inner_handle, (ROWS, 2 * GROUPS), "float32")
    for v, c in T.grid(ROWS, 2 * GROUPS):
        k1 = c // 2
        angle = T.float64(TWO_PI) * _f64(v) * _f64(k1) / T.float64(INNER)
        inner[v, c] = T.Cast("float32", T.if_then_else(
            c % 2 == 0, T.cos(angle),
            T.if_then_else(k1 == 0, T.cos(T.float64(math.pi) * _f64(v)), -T.sin(angle))))


@T.prim_func(private=True)
def fbank_outer_dft(outer_handle: T.handle):
    T.func_attr({"tirx.noalias": True})
    outer = T.match_buffer(outer_handle, (GROUPS, 2 * STRIDE, 2 * BINS_PER_GROUP), "float32")
    for g, r, c in T.grid(GROUPS, 2 * STRIDE, 2 * BINS_PER_GROUP):
        k = _group_bin(g, c % BINS_PER_GROUP)
        part, n2, imaginary = r // STRIDE, r % STRIDE, c // BINS_PER_GROUP
        # the twiddle's angle as numpy forms -2j * pi * n2 * k / 512: (-2 pi n2) k / 512
        angle = T.float64(-TWO_PI) * _f64(n2) * _f64(k) / T.float64(FFT_SIZE)
        cosine = T.cos(angle)
        sine = T.sin(angle)
        # the input's weight: 1 -> (cos, sin); i -> (-sin, cos); -i -> (sin, -cos); 0 -> 0
        first_half = (c % BINS_PER_GROUP) < HALF
        second_half = (c % BINS_PER_GROUP) >= HALF
        weight_is_one = T.if_then_else(
            g == 0, T.if_then_else(part == 0, first_half, second_half), part == 0)
        weight_is_zero = T.if_then_else(
            g == 0, T.if_then_else(part == 0, second_half, first_half), T.bool(False))
        real = T.if_then_else(weight_is_one, cosine, T.if_then_else(first_half, -sine, sine))
        imag = T.if_then_else(weight_is_one, sine, T.if_then_else(first_half, cosine, -cosine))
        outer[g, r, c] = T.Cast("float32", T.if_then_else(
            weight_is_zero, T.float64(0), T.if_then_else(imaginary == 0, real, imag)))


@T.prim_func(private=True)
def fbank_mel_bank(bank_handle: T.handle):
    T.func_attr({"tirx.noalias": True})
    bank = T.match_buffer(bank_handle, (NUM_BINS, NUM_MEL_BINS), "float32")
    for r, m in T.grid(NUM_BINS, NUM_MEL_BINS):
        k = _group_bin(r // BINS_PER_GROUP, r % BINS_PER_GROUP)
        hz = _f64(k * SAMPLE_RATE) / T.float64(FFT_SIZE)
        mel = T.float64(1127.0) * T.log(T.float64(1.0) + hz / T.float64(700.0))
        left = T.float64(MEL_LOW) + _f64(m) * T.float64(MEL_DELTA)
        center = T.float64(MEL_LOW) + _f64(m + 1) * T.float64(MEL_DELTA)
        right = T.float64(MEL_LOW) + _f64(m + 2) * T.float64(MEL_DELTA)
        rising = (mel - left) / (center - left)
        falling = (right - mel) / (right - center)
        # the Nyquist bin (FFT_SIZE / 2) reaches no filter
        inside = (mel > left) & (mel < right) & (k < FFT_SIZE // 2)
        bank[r, m] = T.Cast("float32", T.if_then_else(inside, T.min(rising, falling),
                                                      T.float64(0)))


# The Fbank's tables by their parameter names in the exported graphs (p_ + the buffer's name).
FBANK_TABLES: dict[str, tirx.PrimFunc] = {
    "p_fbank_window": fbank_window, "p_fbank_inner_dft": fbank_inner_dft,
    "p_fbank_outer_dft": fbank_outer_dft, "p_fbank_mel_bank": fbank_mel_bank}
