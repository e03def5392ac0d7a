"""Whisper as a recognizer: int16-scale 16 kHz samples -> text.

Audio longer than 30 s is cut into consecutive 30 s windows (3000 log-mel frames each, the
last one zero-padded), decoded independently (no previous text as a prompt, as faster-whisper
with condition_on_previous_text=False) and their texts joined with a space; nothing is
dropped. The log-mel is computed over the whole utterance first (see frontend.py), so every
window is normalized against the utterance's loudest frame, as faster-whisper does.

Empty or silent audio gives "", by two gates: a window whose loudest sample is within
SILENT_PEAK of zero (-72 dBFS: digital silence or inaudible hiss; audio shorter than one
10 ms hop counts as empty) is not decoded at all, and a decoded window where Whisper's own
no-speech rule fires (decoding.py: no-speech probability > 0.6 and average log-probability
< -1) contributes no text. The second is what faster-whisper does; on zeros and on noise of
any level it alone already gives "" (tests/test_whisper.py), but its log-probability margin
there is small (about 0.2 nats), so digital silence does not depend on it.

The recognizer is numpy throughout: its model (a `RecognizerModel`) is the PyTorch Whisper
behind eager.py, or a deployable (targets/host/whisper_runner.py) or ONNX export
(whisper_onnx_runner.py) run without torch.

`plain_text` maps Whisper's output to the transcripts of our data dirs: lowercase, punctuation
removed (apostrophes inside words kept), spaces collapsed. `tinyasr evaluate` scores that;
`tinyasr transcribe` prints Whisper's own text. Numbers stay digits ("10:20", not "ten
twenty").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tinyasr.model.whisper.audio import HOP, pad_window
from tinyasr.model.whisper.decoding import (
    DecodingModel,
    SearchOptions,
    SearchResult,
    Suppression,
    search,
)
from tinyasr.model.whisper.tokenizer import WhisperTokenizer

SILENT_PEAK = 8.0     # int16 scale: 8 / 32768 = -72 dBFS


@dataclass
class WhisperOptions:
    search: SearchOptions
    plain_text: bool = False


def plain_text(text: str) -> str:
    """Lowercase words without punctuation, as our data dirs' transcripts are."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


class RecognizerModel(DecodingModel, Protocol):
    """A Whisper model as the recognizer runs it: its front end and encoder, and the search's
    decoder states (DecodingModel)."""

    @property
    def n_frames(self) -> int:
        """Log-mel frames per window."""
        ...

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """float32 int16-scale samples (at least one hop) -> (n_mels, len // HOP) log-mel."""
        ...

    def encoder(self, window: np.ndarray) -> Any:
        """(1, n_mels, n_frames) -> what open_window takes."""
        ...


class WhisperRecognizer:
    """A Whisper model, its tokenizer and search options, ready to transcribe."""

    def __init__(self, model: RecognizerModel, tokenizer: WhisperTokenizer, config: dict,
                 options: WhisperOptions | None = None):
        """config: the model dir's (or manifest's) suppress lists."""
        self.model, self.tokenizer = model, tokenizer
        self.options = options or WhisperOptions(SearchOptions())
        self.suppression = Suppression(model.dims.n_vocab, tokenizer.specials,
                                       config["suppress_ids"], config["suppress_ids_begin"])

    @classmethod
    def load(cls, path: Path, options: WhisperOptions | None = None) -> WhisperRecognizer:
        """The PyTorch model of a converted model dir (imports torch)."""
        from tinyasr.model.whisper.eager import load_eager_whisper

        model, tokenizer, config = load_eager_whisper(path)
        return cls(model, tokenizer, config, options)

    def windows(self, samples: np.ndarray) -> list[tuple[np.ndarray, bool]]:
        """(1, n_mels, 3000) float32 log-mel windows covering the whole utterance, in order,
        each with whether its samples are silent (peak <= SILENT_PEAK)."""
        samples = np.asarray(samples, dtype=np.float32)
        starts = window_starts(samples, self.model.n_frames)
        if not starts:
            return []
        features = self.model.log_mel(samples)
        size = self.model.n_frames
        return [(pad_window(features[:, start:start + size], size)[None], silent)
                for start, silent in starts]

    def decode_window(self, window: np.ndarray) -> SearchResult:
        return search(self.model, self.model.encoder(window), self.tokenizer.specials,
                      self.suppression, self.options.search)

    def window_results(self, samples: np.ndarray) -> list[SearchResult]:
        """The search's result for each window that is not silent, in order (a result may
        still be silence by Whisper's no-speech rule)."""
        return [self.decode_window(window) for window, silent in self.windows(samples)
                if not silent]

    def transcribe(self, samples: np.ndarray) -> str:
        return self.text_of(self.window_results(samples))

    def text_of(self, results: list[SearchResult]) -> str:
        """The transcript of `window_results`: the texts of windows with speech, stripped and
        joined with a space."""
        texts = [self.tokenizer.decode(result.tokens).strip() for result in results
                 if not result.is_silence(self.options.search)]
        text = " ".join(t for t in texts if t)
        return plain_text(text) if self.options.plain_text else text


def window_starts(samples: np.ndarray, size: int) -> list[tuple[int, bool]]:
    """The windows of an utterance: each one's first log-mel frame (every `size` frames of the
    len // HOP) and whether its samples are silent (peak <= SILENT_PEAK); none for audio
    shorter than one hop. tinyasr-run's twin: targets/native/src/whisper_decode.h."""
    if len(samples) < HOP:
        return []
    return [(start, _is_silent(samples[start * HOP:(start + size) * HOP]))
            for start in range(0, len(samples) // HOP, size)]


def _is_silent(samples: np.ndarray) -> bool:
    return samples.size == 0 or float(np.abs(samples).max()) <= SILENT_PEAK
