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

`plain_text` maps Whisper's output to the transcripts of our data dirs: lowercase, punctuation
removed (apostrophes inside words kept), spaces collapsed. `tinyasr evaluate` scores that;
`tinyasr transcribe` prints Whisper's own text. Numbers stay digits ("10:20", not "ten
twenty").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinyasr.model.whisper.convert import load_whisper_dir
from tinyasr.model.whisper.decoding import SearchOptions, SearchResult, Suppression, search
from tinyasr.model.whisper.frontend import HOP, log_mel, pad_window
from tinyasr.model.whisper.model import Whisper
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


class WhisperRecognizer:
    """A Whisper model, its tokenizer and search options, ready to transcribe."""

    def __init__(self, model: Whisper, tokenizer: WhisperTokenizer, config: dict,
                 options: WhisperOptions | None = None,
                 front_end: Callable[[np.ndarray], torch.Tensor] | None = None):
        """model: the PyTorch Whisper, or a compiled one (targets/host/whisper_runner.py) with the
        same `dims`, `n_frames`, `encoder` and an `open_window` for the search; front_end:
        samples -> log-mel (default: frontend.log_mel in PyTorch)."""
        self.model, self.tokenizer = model.eval(), tokenizer
        self.front_end = front_end or (lambda samples: log_mel(torch.from_numpy(samples)))
        self.options = options or WhisperOptions(SearchOptions())
        self.suppression = Suppression(model.dims.n_vocab, tokenizer.specials,
                                       config["suppress_ids"], config["suppress_ids_begin"])

    @classmethod
    def load(cls, path: Path, options: WhisperOptions | None = None) -> WhisperRecognizer:
        return cls(*load_whisper_dir(path), options)

    def windows(self, samples: np.ndarray) -> list[tuple[torch.Tensor, bool]]:
        """(1, n_mels, 3000) log-mel windows covering the whole utterance, in order, each with
        whether its samples are silent (peak <= SILENT_PEAK)."""
        samples = np.asarray(samples, dtype=np.float32)
        starts = window_starts(samples, self.model.n_frames)
        if not starts:
            return []
        features = self.front_end(samples)
        size = self.model.n_frames
        return [(pad_window(features[:, start:start + size], size)[None], silent)
                for start, silent in starts]

    @torch.no_grad()
    def decode_window(self, window: torch.Tensor) -> SearchResult:
        encoded = self.model.encoder(window)
        return search(self.model, encoded, self.tokenizer.specials, self.suppression,
                      self.options.search)

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
