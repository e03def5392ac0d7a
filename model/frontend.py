"""Kaldi-compatible 80-dim log-mel filterbank, written so it compiles.

Everything Kaldi does to one 25 ms frame before the FFT (remove the DC offset, pre-emphasis,
Povey window) and the real DFT itself are linear in the frame's 400 samples. So the whole
frame-to-spectrum step is one fixed 400 x (2 * 256) matrix, applied to all frames at once as one
matmul. Frames are cut without a gather: 400 = 2.5 shifts of 160, so frame t is rows t and t+1
and half of row t+2 of the waveform viewed as rows of 160 samples. The module then needs only
reshape, slicing, matmul, square and log: it exports with `torch.export` (every shape an affine
function of the frame count), imports into TVM Relax as two plain matmuls that tune like any
dense layer (a strided convolution with 514 output channels tuned 10x worse), and runs the same
numbers in training, in the PyTorch reference and inside the compiled board library.

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


# FFT bins 1..256: bin 0 (DC) lies below LOW_FREQ and reaches no mel filter, so it is never
# computed, which leaves 2 * 256 spectrum columns: a size the compiled matmul tiles and
# vectorizes well (2 * 257 = 2 * a prime tuned 3x slower).
FIRST_BIN = 1
NUM_BINS = FFT_SIZE // 2


def _frame_to_spectrum_matrix() -> np.ndarray:
    """(2*NUM_BINS, FRAME_LENGTH) float64 matrix: DC removal, pre-emphasis, window, real DFT."""
    n = FRAME_LENGTH
    remove_dc = np.eye(n) - np.full((n, n), 1.0 / n)
    preemphasis = np.eye(n) - PREEMPHASIS * np.eye(n, k=-1)
    preemphasis[0, 0] = 1.0 - PREEMPHASIS          # Kaldi: x[0] -= 0.97 * x[0]
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(n) / (n - 1))
    window = np.diag(hann ** 0.85)                  # Povey window
    bins = np.arange(FIRST_BIN, FIRST_BIN + NUM_BINS)
    angles = 2 * math.pi * np.outer(bins, np.arange(n)) / FFT_SIZE
    dft = np.concatenate([np.cos(angles), -np.sin(angles)])  # zero padding to 512 is implicit
    return dft @ window @ preemphasis @ remove_dc


def _mel(freq: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)


def _mel_filterbank() -> np.ndarray:
    """(NUM_BINS, NUM_MEL_BINS) triangular filters in Kaldi's mel scale over bins FIRST_BIN..;
    the Nyquist bin gets 0."""
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
    assert not bank[:FIRST_BIN].any()
    return bank[FIRST_BIN:FIRST_BIN + NUM_BINS]


class Fbank(nn.Module):
    """(batch, samples) int16-scale waveform -> (batch, frames, 80) log-mel features."""

    def __init__(self) -> None:
        super().__init__()
        spectrum = torch.from_numpy(_frame_to_spectrum_matrix().T.copy()).float()
        self.register_buffer("frame_to_spectrum", spectrum, persistent=False)
        self.register_buffer("mel_bank", torch.from_numpy(_mel_filterbank()).float(),
                             persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = frames_of(waveform) @ self.frame_to_spectrum     # (B, frames, 2 * bins)
        real, imag = spectrum.chunk(2, dim=-1)
        power = real * real + imag * imag                            # (B, frames, bins)
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

    def __init__(self, mean: torch.Tensor, istd: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("istd", istd.float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) * self.istd
