"""Whisper's log-mel front end in torch ops: 80 Slaney mel bins of a 400-point STFT.

Whisper's features: samples in [-1, 1) (here int16-scale input / 32768), a centred STFT
(n_fft 400, hop 160, periodic Hann window, reflect padding of 200 samples each side), power
spectrum of bins 0..200, an 80-bin Slaney-style mel filterbank over 0..8 kHz (area-normalized
triangles, linear below 1 kHz and logarithmic above), log10 with a 1e-10 floor, then every
value raised to at least (maximum - 8) and mapped by (x + 4) / 4.

Framing follows faster-whisper's feature extractor, our parity reference: 160 zero samples are
appended before the STFT, its last frame is dropped, the clamp takes the maximum over all
remaining frames (the whole utterance, not per 30 s window), and the first `len // 160`
frames are the content. A window shorter than 3000 frames is padded with zeros *after*
normalization (audio.pad_window), as faster-whisper does.

Like model/network/frontend.py, frames are cut without a gather (a frame of 400 = 2.5 hops is rows
t, t+1 and half of row t+2 of the signal viewed as rows of 160) and the DFT is two matmuls (cosine
and sine parts), so the function exports with `torch.export`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from tinyasr.model.whisper.audio import HOP, N_FFT, N_MELS, SAMPLE_RATE

N_BINS = N_FFT // 2 + 1
INT16_SCALE = 32768.0
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0      # log10 units kept below the maximum (80 dB)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3 per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_start_mel = 1000.0 / (200.0 / 3)               # 15
    log_step = math.log(6.4) / 27.0                    # 27 mels per factor 6.4
    safe = np.maximum(hz, 1000.0)
    return np.where(hz >= 1000.0, log_start_mel + np.log(safe / 1000.0) / log_step, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    log_start_mel = 1000.0 / (200.0 / 3)
    log_step = math.log(6.4) / 27.0
    return np.where(mel >= log_start_mel, 1000.0 * np.exp(log_step * (mel - log_start_mel)),
                    mel * (200.0 / 3))


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, Slaney-normalized: each triangle spans
    three consecutive points equally spaced in mel from 0 Hz to Nyquist and is scaled by
    2 / (its width in Hz), so every filter has the same area."""
    bin_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges_hz = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))


@functools.cache
def _constants() -> tuple[Tensor, Tensor, Tensor]:
    """Windowed DFT matrices (N_FFT, N_BINS) for the cosine and sine parts, and the mel
    filterbank transposed (N_BINS, N_MELS), all float32; built in float64 then rounded."""
    n = np.arange(N_FFT)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(N_FFT) / N_FFT)   # periodic Hann
    angles = 2 * math.pi * n * np.arange(N_BINS)[None, :] / N_FFT
    cos = window[:, None] * np.cos(angles)
    sin = window[:, None] * np.sin(angles)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return as_tensor(cos), as_tensor(sin), as_tensor(mel_filterbank().T)


def frames_of(samples: Tensor) -> Tensor:
    """(n,) samples in [-1, 1) -> (n // HOP + 1, N_FFT) centred frames of the signal with HOP
    zeros appended and reflect-padded by N_FFT // 2 (the STFT's frames but its last)."""
    count = samples.shape[0] // HOP + 1
    signal = torch.cat([samples, samples.new_zeros(HOP)])
    pad = N_FFT // 2
    padded = torch.nn.functional.pad(signal[None, None], (pad, pad), mode="reflect")[0, 0]
    rows = padded[:HOP * (count + 2)].reshape(count + 2, HOP)
    return torch.cat([rows[:count], rows[1:count + 1], rows[2:count + 2, :N_FFT - 2 * HOP]], 1)


def log_mel(samples: Tensor) -> Tensor:
    """(n,) int16-scale float samples -> (N_MELS, n // HOP) normalized log-mel features.

    Needs n > 40 (the reflect padding needs more than 200 samples after the 160 zeros);
    `WhisperRecognizer` treats anything shorter than one hop as empty audio."""
    cos, sin, filters = _constants()
    return _log_mel_of_frames(frames_of(samples.to(torch.float32) / INT16_SCALE), cos, sin,
                              filters)


def log_mel_of_padded(padded: Tensor, cos: Tensor, sin: Tensor, filters: Tensor) -> Tensor:
    """`log_mel` of int16-scale samples already padded as `frames_of` pads them (cut to the
    HOP * (frames + 3) samples its frames read), the constants given: the compiled front end
    (compile/whisper_graphs.py), where the padding is the caller's."""
    count = padded.shape[0] // HOP - 2
    rows = (padded / INT16_SCALE).reshape(count + 2, HOP)
    frames = torch.cat([rows[:count], rows[1:count + 1], rows[2:count + 2, :N_FFT - 2 * HOP]], 1)
    return _log_mel_of_frames(frames, cos, sin, filters)


def _log_mel_of_frames(frames: Tensor, cos: Tensor, sin: Tensor, filters: Tensor) -> Tensor:
    power = (frames @ cos) ** 2 + (frames @ sin) ** 2
    log_spec = torch.log10(torch.clamp(power @ filters, min=LOG_FLOOR))
    log_spec = torch.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE)
    return ((log_spec + 4.0) / 4.0)[:frames.shape[0] - 1].t()   # the last frame dropped

