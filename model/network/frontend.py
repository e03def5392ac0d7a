"""Kaldi-compatible 80-dim log-mel filterbank, written so it compiles.

Each 25 ms frame has its DC offset removed, is pre-emphasized and windowed (Povey), and goes
through a 512-point real DFT done as two small matmuls (Cooley-Tukey, 512 = 32 x 16: sample
n = 16 * n1 + n2, and a frame's 400 samples are 25 rows of 16): a 32-point DFT over n1 for each
n2, then per output group a 16-point DFT over n2 with the twiddles folded in. That is 7x fewer
multiply-adds than the DFT as one 400 x 512 matrix, which was a third of the compiled int8
encoder's time. Frames are cut without a gather: 400 = 2.5 shifts of 160, so frame t is rows t
and t+1 and half of row t+2 of the waveform viewed as rows of 160 samples. The module needs only
reshape, slicing, transposes, matmuls, square and log: it exports with `torch.export` (every
shape an affine function of the frame count), imports into TVM Relax as plain matmuls (which the
compiler makes one power-spectrum kernel: compile/kernels/fbank.py), and runs the same numbers
in training, in the PyTorch reference and inside the compiled board library.

Settings are Kaldi's defaults with dither 0: 16 kHz, 25 ms window, 10 ms shift, snip edges,
pre-emphasis 0.97, Povey window, 512-point FFT, power spectrum, 80 mel bins from 20 Hz to Nyquist,
log with a float-epsilon floor. Input samples are at int16 scale, as Kaldi reads wav files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tinyasr.model.network.framing import FRAME_LENGTH, FRAME_SHIFT, SAMPLE_RATE, num_frames

FFT_SIZE = 512
NUM_MEL_BINS = 80
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
LOG_FLOOR = float(np.finfo(np.float32).eps)


# FFT bins 1..256: bin 0 (DC) lies below LOW_FREQ and reaches no mel filter, so it is never
# computed; bin 256 (Nyquist) is computed but reaches no filter either.
FIRST_BIN = 1
NUM_BINS = FFT_SIZE // 2

# The two DFT stages: sample n = STRIDE * n1 + n2, bin k = k1 + INNER * k2 (k1 < INNER).
STRIDE = 16                              # n2: the inner DFT runs once per n2
ROWS = FRAME_LENGTH // STRIDE            # n1: 25 samples per inner DFT (400 = 25 x 16)
INNER = FFT_SIZE // STRIDE               # the inner DFT's size, 32
GROUPS = INNER // 2                      # inner outputs (complex) an outer DFT takes: 16
BINS_PER_GROUP = NUM_BINS // GROUPS      # bins each outer DFT yields: 16


def _inner_dft_matrix() -> np.ndarray:
    """(ROWS, GROUPS * 2): the 32-point DFT over n1 at k1 = 0..15 as (real, imaginary) column
    pairs. Its outputs at k1 = 0 and 16 are real, so k1 = 16's real part takes k1 = 0's
    imaginary column; k1 = 17..31 are the conjugates of 15..1 (the samples are real)."""
    n1 = np.arange(ROWS)[:, None]
    angles = 2 * math.pi * n1 * np.arange(GROUPS) / INNER
    matrix = np.stack([np.cos(angles), -np.sin(angles)], axis=-1)
    matrix[:, 0, 1] = np.cos(math.pi * n1[:, 0])
    return matrix.reshape(ROWS, GROUPS * 2)


def _group_bins() -> list[Sequence[tuple[int, complex, complex]]]:
    """Per group, its BINS_PER_GROUP output bins as (bin, a, b): the bin's inner value at each
    n2 is a * (group's first input) + b * (its second input)."""
    groups: list[Sequence[tuple[int, complex, complex]]] = [
        [(INNER * k2, 1, 0) for k2 in range(1, 9)]                  # k1 = 0: real input 0
        + [(GROUPS + INNER * k2, 0, 1) for k2 in range(8)]]         # k1 = 16: real input 1
    for k1 in range(1, GROUPS):
        groups.append([(k1 + INNER * k2, 1, 1j) for k2 in range(8)]               # k1
                      + [(INNER - k1 + INNER * k2, 1, -1j) for k2 in range(8)])   # conjugate
    return groups


def _outer_dft_matrices() -> np.ndarray:
    """(GROUPS, 2 * STRIDE, 2 * BINS_PER_GROUP): per group, its inputs (2 parts x n2) to the
    real parts and then the imaginary parts of its bins; the twiddles are folded in (the
    outer DFT times W_512^(n2 * k1) is W_512^(n2 * k))."""
    n2 = np.arange(STRIDE)
    matrices = np.zeros((GROUPS, 2, STRIDE, 2, BINS_PER_GROUP))
    for group, bins in enumerate(_group_bins()):
        for column, (k, a, b) in enumerate(bins):
            twiddle = np.exp(-2j * math.pi * n2 * k / FFT_SIZE)
            for part, weight in enumerate((a, b)):
                matrices[group, part, :, 0, column] = (weight * twiddle).real
                matrices[group, part, :, 1, column] = (weight * twiddle).imag
    return matrices.reshape(GROUPS, 2 * STRIDE, 2 * BINS_PER_GROUP)


def _window() -> np.ndarray:
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(FRAME_LENGTH) / (FRAME_LENGTH - 1))
    return hann ** 0.85                                  # Povey window


def mel_scale(freq: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale, in float64."""
    return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)


# Filter m's left edge, centre and right edge are MEL_LOW + (m + 0, 1, 2) * MEL_DELTA.
MEL_LOW = float(mel_scale(LOW_FREQ))
MEL_DELTA = (float(mel_scale(SAMPLE_RATE / 2)) - MEL_LOW) / (NUM_MEL_BINS + 1)


def _mel_filterbank() -> np.ndarray:
    """(NUM_BINS, NUM_MEL_BINS) triangular filters in Kaldi's mel scale over bins FIRST_BIN..;
    the Nyquist bin gets 0."""
    bins = FFT_SIZE // 2 + 1
    mel_low, delta = MEL_LOW, MEL_DELTA
    bin_mels = mel_scale(np.arange(FFT_SIZE // 2) * SAMPLE_RATE / FFT_SIZE)
    bank = np.zeros((bins, NUM_MEL_BINS))
    for m in range(NUM_MEL_BINS):
        left, center, right = (mel_low + (m + k) * delta for k in range(3))
        rising = (bin_mels - left) / (center - left)
        falling = (right - bin_mels) / (right - center)
        inside = (bin_mels > left) & (bin_mels < right)
        bank[: FFT_SIZE // 2, m] = np.where(inside, np.minimum(rising, falling), 0.0)
    assert not bank[:FIRST_BIN].any()
    return bank[FIRST_BIN:FIRST_BIN + NUM_BINS]


class Fbank(nn.Module):
    """(batch, samples) int16-scale waveform -> (batch, frames, 80) log-mel features."""

    window: torch.Tensor          # buffers, registered in __init__
    inner_dft: torch.Tensor
    outer_dft: torch.Tensor
    mel_bank: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        group_order = [k - FIRST_BIN for bins in _group_bins() for k, _, _ in bins]
        for name, value in [("window", _window()), ("inner_dft", _inner_dft_matrix()),
                            ("outer_dft", _outer_dft_matrices()),
                            ("mel_bank", _mel_filterbank()[group_order])]:
            self.register_buffer(name, torch.from_numpy(value).float(), persistent=False)

    def windowed(self, frames: torch.Tensor) -> torch.Tensor:
        """Kaldi's steps before the FFT: DC offset removed, pre-emphasis (x[0] -= 0.97 x[0]),
        Povey window."""
        centered = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([centered[..., :1], centered[..., :-1]], dim=-1)
        return (centered - PREEMPHASIS * previous) * self.window

    def power_spectrum(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, FRAME_LENGTH) windowed frames -> (B, T, NUM_BINS) power, bins in group order."""
        batch, count = frames.shape[:2]
        columns = frames.reshape(batch, count, ROWS, STRIDE).transpose(-1, -2)
        inner = columns.reshape(batch, count * STRIDE, ROWS) @ self.inner_dft
        inner = inner.reshape(batch, count, STRIDE, GROUPS, 2).permute(3, 0, 1, 4, 2)
        outer = inner.reshape(GROUPS, -1, 2 * STRIDE) @ self.outer_dft   # (groups, B*T, 2*bins)
        real, imag = outer.chunk(2, dim=-1)
        power = (real * real + imag * imag).reshape(GROUPS, batch, count, BINS_PER_GROUP)
        return power.permute(1, 2, 0, 3).reshape(batch, count, NUM_BINS)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        power = self.power_spectrum(self.windowed(frames_of(waveform)))
        return torch.log(torch.clamp(power @ self.mel_bank, min=LOG_FLOOR))


def frames_of(waveform: torch.Tensor) -> torch.Tensor:
    """(batch, samples) -> (batch, frames, FRAME_LENGTH) Kaldi frames (snip edges).

    The waveform, cut or zero-padded to FRAME_SHIFT * (frames + 2) samples (never dropping a
    sample a frame reads), is viewed as rows of FRAME_SHIFT; frame t is rows t, t+1 and the
    first half of row t+2."""
    frames = num_frames(waveform.shape[1])
    rows = nn.functional.pad(waveform, (0, FRAME_SHIFT * (frames + 2) - waveform.shape[1]))
    rows = rows.reshape(waveform.shape[0], frames + 2, FRAME_SHIFT)
    tail = FRAME_LENGTH - 2 * FRAME_SHIFT
    return torch.cat([rows[:, :frames], rows[:, 1:frames + 1], rows[:, 2:frames + 2, :tail]],
                     dim=-1)


class GlobalCMVN(nn.Module):
    """Normalizes features with mean and inverse std measured once on the training set."""

    mean: torch.Tensor            # buffers, registered in __init__
    istd: torch.Tensor

    def __init__(self, mean: torch.Tensor, istd: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("istd", istd.float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) * self.istd
