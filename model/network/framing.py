"""How audio is cut into frames, in plain integers: the fbank's 25 ms / 10 ms frames, the
encoder's 4x subsampling, and the samples an encoder frame count reads.

Free of torch and numpy, so that a compiled deployable frames its input without PyTorch;
model/network/frontend.py and compile/graphs.py take these from here.
"""

from __future__ import annotations

from typing import TypeVar

SAMPLE_RATE = 16000
FRAME_LENGTH = 400   # 25 ms
FRAME_SHIFT = 160    # 10 ms
SUBSAMPLING = 4
SAMPLES_PER_FRAME = SUBSAMPLING * FRAME_SHIFT   # 640 samples (40 ms) per encoder frame
MIN_FRAMES = 2                                  # torch.export specializes a length-1 time axis

Lengths = TypeVar("Lengths")   # an int, or a tensor of lengths (the same arithmetic)


def num_frames(num_samples: int) -> int:
    """Frames Kaldi produces for `num_samples` with snip_edges=True."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def subsampled_lengths(lengths: Lengths) -> Lengths:
    """Frames left after the two 3x3 stride-2 convolutions (Conv2dSubsampling4)."""
    return ((lengths - 1) // 2 - 1) // 2   # type: ignore[operator]


def encoder_frames(num_samples: int) -> int:
    """Encoder output frames for `num_samples` of audio (0 when too short for one)."""
    return max(0, int(subsampled_lengths(num_frames(num_samples))))


def samples_read(frames: int) -> int:
    """How many leading samples the encoder reads for `frames` output frames: the two 3x3
    stride-2 convolutions read SUBSAMPLING * frames + 3 fbank frames."""
    return FRAME_LENGTH + FRAME_SHIFT * (SUBSAMPLING * frames + 2)
