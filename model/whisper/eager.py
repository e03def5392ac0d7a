"""The PyTorch Whisper (model.py) as the recognizer's model: numpy in and out, torch inside.

`EagerWhisper` offers what `WhisperRecognizer` and the search ask of a model (recognizer.py
`RecognizerModel`): `dims`, `n_frames`, `log_mel(samples)`, `encoder(window)` and
`open_window(encoded)` giving an `EagerWindow` with `step(tokens) -> logits` and
`reorder(rows)`. Arrays become tensors at this boundary and nowhere else, so the compiled and
exported runners (targets/host) decode through the same search without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tinyasr.model.whisper.convert import load_whisper_dir
from tinyasr.model.whisper.dims import WhisperDims
from tinyasr.model.whisper.frontend import log_mel
from tinyasr.model.whisper.model import Decoder, Whisper
from tinyasr.model.whisper.tokenizer import WhisperTokenizer


class EagerWindow:
    """The decoder's state for one window: cross-attention keys/values and self-attention
    caches for a batch of hypotheses, and the next position."""

    def __init__(self, decoder: Decoder, encoded: Tensor):
        self.decoder = decoder
        self.cross_k, self.cross_v = decoder.cross_cache(encoded)
        self.self_k, self.self_v = decoder.empty_self_cache(encoded.shape[0])
        self.position = 0

    @torch.no_grad()
    def step(self, tokens: np.ndarray) -> np.ndarray:
        """int64 tokens (batch, t) at the next t positions -> logits (batch, t, vocab)."""
        positions = torch.arange(self.position, self.position + tokens.shape[1])
        logits, self.self_k, self.self_v = self.decoder(
            torch.from_numpy(tokens), positions, self.self_k, self.self_v, self.cross_k,
            self.cross_v)
        self.position += tokens.shape[1]
        return logits.numpy()

    def reorder(self, rows: np.ndarray) -> None:
        """Keep (and repeat) the hypotheses `rows` of the batch: beam search's reordering."""
        index = torch.from_numpy(rows)
        self.self_k = tuple(k.index_select(0, index) for k in self.self_k)
        self.self_v = tuple(v.index_select(0, index) for v in self.self_v)
        if self.cross_k[0].shape[0] != len(rows):
            repeat = (len(rows), 1, 1, 1)     # one window: every row has the same memory
            self.cross_k = tuple(k[:1].repeat(repeat) for k in self.cross_k)
            self.cross_v = tuple(v[:1].repeat(repeat) for v in self.cross_v)


class EagerWhisper:
    """A `Whisper` module shaped as the recognizer's model."""

    def __init__(self, module: Whisper):
        self.module = module.eval()

    @property
    def dims(self) -> WhisperDims:
        return self.module.dims

    @property
    def n_frames(self) -> int:
        return self.module.n_frames

    @torch.no_grad()
    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        return log_mel(torch.from_numpy(samples)).numpy()

    @torch.no_grad()
    def encoder(self, window: np.ndarray) -> Tensor:
        """(1, n_mels, n_frames) -> the encoder output (1, n_audio_ctx, d)."""
        return self.module.encoder(torch.from_numpy(window))

    def encoded(self, encoded: Tensor) -> np.ndarray:
        """The (1, n_audio_ctx, d) encoder output of `encoder`'s result."""
        return encoded.numpy()

    def open_window(self, encoded: Tensor) -> EagerWindow:
        return EagerWindow(self.module.decoder, encoded)


def load_eager_whisper(path: Path) -> tuple[EagerWhisper, WhisperTokenizer, dict]:
    """(model, tokenizer, config) of a converted model dir (convert.py)."""
    module, tokenizer, config = load_whisper_dir(path)
    return EagerWhisper(module), tokenizer, config
