"""Long audio cut into windows, so that memory stays bounded whatever the input's length.

The SAN-M encoder attends over the whole utterance, so its memory grows with the square of the
length (a 10-minute file took 7.3 GB). Audio longer than MAX_SECONDS is cut into windows of at
most MAX_SECONDS, each cut at the quietest 10 ms frame (least energy) in the last
SEARCH_SECONDS of its window, so a cut falls in a pause rather than inside a word where one is
near; each window is transcribed alone and the texts joined with a space. Audio of at most
MAX_SECONDS is one window, the input itself, and decodes exactly as it would unwindowed.

Shared by the PyTorch `Recognizer` and the compiled `CompiledRecognizer`; numpy only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinyasr.model.network.framing import FRAME_SHIFT, SAMPLE_RATE, encoder_frames

MAX_SECONDS = 30.0      # longest audio transcribed in one piece
MAX_FRAMES = encoder_frames(int(MAX_SECONDS * SAMPLE_RATE))   # its encoder frames: 748
SEARCH_SECONDS = 5.0    # where a cut may fall: this much before a window's end


def window_bounds(samples: np.ndarray, max_seconds: float = MAX_SECONDS,
                  search_seconds: float = SEARCH_SECONDS) -> list[tuple[int, int]]:
    """[start, end) sample ranges covering `samples` in order, each at most `max_seconds`;
    one range for audio no longer than that."""
    total = len(samples)
    longest = int(max_seconds * SAMPLE_RATE)
    search = min(int(search_seconds * SAMPLE_RATE), longest // 2)
    bounds, start = [], 0
    while total - start > longest:
        low = start + longest - search           # the cut falls in [low, start + longest]
        frames = search // FRAME_SHIFT
        region = np.asarray(samples[low:low + frames * FRAME_SHIFT], dtype=np.float64)
        energy = np.square(region.reshape(frames, FRAME_SHIFT)).sum(axis=1)
        quietest = int(np.flatnonzero(energy == energy.min())[-1])   # the latest, if tied
        cut = low + quietest * FRAME_SHIFT + FRAME_SHIFT // 2
        bounds.append((start, cut))
        start = cut
    bounds.append((start, total))
    return bounds


def transcribe_in_windows(samples: np.ndarray, transcribe: Callable[[np.ndarray], str],
                          max_seconds: float = MAX_SECONDS) -> str:
    """`transcribe` run on each window of `samples` (window_bounds), the non-empty texts
    joined with a space; for audio of at most `max_seconds`, `transcribe(samples)` itself."""
    bounds = window_bounds(samples, max_seconds)
    if len(bounds) == 1:
        return transcribe(samples)
    texts = (transcribe(samples[start:end]).strip() for start, end in bounds)
    return " ".join(text for text in texts if text)
