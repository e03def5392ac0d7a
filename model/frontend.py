"""Kaldi-compatible 80-dim log-mel filterbank, written so it compiles.

Everything Kaldi does to one 25 ms frame before the FFT (remove the DC offset, pre-emphasis,
Povey window) and the real DFT itself are linear in the frame's 400 samples. So the whole
frame-to-spectrum step is one fixed (2 * 257) x 400 matrix, applied to every frame at once as a
strided 1-D convolution. The module then needs only conv1d, square, matmul and log: it exports
with `torch.export`, imports into TVM Relax, and runs the same numbers in training, in the
PyTorch reference and inside the compiled board library.

Settings are Kaldi's defaults with dither 0: 16 kHz, 25 ms window, 10 ms shift, snip edges,
pre-emphasis 0.97, Povey window, 512-point FFT, power spectrum, 80 mel bins from 20 Hz to Nyquist,
log with a float-epsilon floor. Input samples are at int16 scale, as Kaldi reads wav files.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000
FRAME_LENGTH = 400   # 25 ms
FRAME_SHIFT = 160    # 10 ms
FFT_SIZE = 512
NUM_MEL_BINS = 80
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
LOG_FLOOR = float(np.finfo(np.float32).eps)


def num_frames(num_samples: int) -> int:
    """Frames Kaldi produces for `num_samples` with snip_edges=True."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def _frame_to_spectrum_matrix() -> np.ndarray:
    """(2*bins, FRAME_LENGTH) float64 matrix: DC removal, pre-emphasis, window, then real DFT."""
    n = FRAME_LENGTH
    remove_dc = np.eye(n) - np.full((n, n), 1.0 / n)
    preemphasis = np.eye(n) - PREEMPHASIS * np.eye(n, k=-1)
    preemphasis[0, 0] = 1.0 - PREEMPHASIS          # Kaldi: x[0] -= 0.97 * x[0]
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(n) / (n - 1))
    window = np.diag(hann ** 0.85)                  # Povey window
    bins = FFT_SIZE // 2 + 1
    angles = 2 * math.pi * np.outer(np.arange(bins), np.arange(n)) / FFT_SIZE
    dft = np.concatenate([np.cos(angles), -np.sin(angles)])  # zero padding to 512 is implicit
    return dft @ window @ preemphasis @ remove_dc


def _mel(freq: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)


def _mel_filterbank() -> np.ndarray:
    """(bins, NUM_MEL_BINS) triangular filters in Kaldi's mel scale; the Nyquist bin gets 0."""
    bins = FFT_SIZE // 2 + 1
    mel_low, mel_high = _mel(LOW_FREQ), _mel(SAMPLE_RATE / 2)
    delta = (mel_high - mel_low) / (NUM_MEL_BINS + 1)
    bin_mels = _mel(np.arange(FFT_SIZE // 2) * SAMPLE_RATE / FFT_SIZE)
    bank = np.zeros((bins, NUM_MEL_BINS))
    for m in range(NUM_MEL_BINS):
        left, center, right = (mel_low + (m + k) * delta for k in range(3))
        rising = (bin_mels - left) / (center - left)
        falling = (right - bin_mels) / (right - center)
        inside = (bin_mels > left) & (bin_mels < right)
        bank[: FFT_SIZE // 2, m] = np.where(inside, np.minimum(rising, falling), 0.0)
    return bank


class Fbank(nn.Module):
    """(batch, samples) int16-scale waveform -> (batch, frames, 80) log-mel features."""

    def __init__(self) -> None:
        super().__init__()
        spectrum = torch.from_numpy(_frame_to_spectrum_matrix()).float()
        self.register_buffer("frame_to_spectrum", spectrum.unsqueeze(1), persistent=False)
        self.register_buffer("mel_bank", torch.from_numpy(_mel_filterbank()).float(),
                             persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = nn.functional.conv1d(waveform.unsqueeze(1), self.frame_to_spectrum,
                                        stride=FRAME_SHIFT)          # (B, 2*bins, frames)
        real, imag = spectrum.chunk(2, dim=1)
        power = (real * real + imag * imag).transpose(1, 2)           # (B, frames, bins)
        return torch.log(torch.clamp(power @ self.mel_bank, min=LOG_FLOOR))


class GlobalCMVN(nn.Module):
    """Normalizes features with mean and inverse std measured once on the training set."""

    def __init__(self, mean: torch.Tensor, istd: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("istd", istd.float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) * self.istd
