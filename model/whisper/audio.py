"""Whisper's audio framing in numpy: the sizes every runner shares, how the log-mel's input is
padded, and how its output is cut into windows.

frontend.py computes the log-mel itself in torch ops (the graph that is compiled and exported).
A runner of a compiled or exported log-mel (targets/host) and the recognizer's windows need only
what is here, so they run without torch.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
PAD_SAMPLES = 3 * HOP      # padded_signal holds HOP * (frames + 3) samples


def padded_signal(samples: np.ndarray) -> np.ndarray:
    """int16-scale samples -> what a compiled `log_mel` takes: the signal with HOP zeros
    appended, reflect-padded by N_FFT // 2 each side, cut to the HOP * frames + PAD_SAMPLES
    samples its frames read (frames = len // HOP). The same padding as frontend.frames_of."""
    samples = np.asarray(samples, dtype=np.float32)
    frames = len(samples) // HOP
    signal = np.concatenate([samples, np.zeros(HOP, np.float32)])
    padded = np.pad(signal, N_FFT // 2, mode="reflect")
    return np.ascontiguousarray(padded[:HOP * frames + PAD_SAMPLES])


def pad_window(features: np.ndarray, frames: int) -> np.ndarray:
    """(N_MELS, t) with t <= frames -> (N_MELS, frames) in row-major order, zeros after the
    content (after the normalization, as faster-whisper pads)."""
    return np.ascontiguousarray(np.pad(features, ((0, 0), (0, frames - features.shape[1]))))
