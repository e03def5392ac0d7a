"""Run Whisper's ONNX export (compile/whisper_onnx.py) with ONNX Runtime on this machine's CPU.

`OnnxWhisper` offers what `WhisperRecognizer` and the search ask of a model
(model/whisper/recognizer.py `RecognizerModel`), as the TVM runner does
(targets/host/whisper_runner.py). So ONNX Runtime decodes through
the same windows, prompt, suppression, greedy and beam search and no-speech gate as PyTorch
and TVM; only the tensors come from ORT sessions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np

from tinyasr.compile.whisper_manifest import cache_names
from tinyasr.compile.whisper_onnx import ENCODE_ONNX, GRAPH_FILES, LOG_MEL_ONNX, STEP_ONNX
from tinyasr.model.common.errors import InputError
from tinyasr.model.whisper.audio import padded_signal
from tinyasr.model.whisper.convert import CONFIG_FILE, FAMILY
from tinyasr.model.whisper.decoding import SearchOptions
from tinyasr.model.whisper.dims import WhisperDims
from tinyasr.model.whisper.recognizer import WhisperOptions, WhisperRecognizer
from tinyasr.model.whisper.tokenizer import WhisperTokenizer


class OnnxWindow:
    """One window's decoder state: the cross-attention caches (batch 1, broadcast over the
    hypotheses by the graph), the live hypotheses' self-attention caches, the next position."""

    def __init__(self, model: OnnxWhisper, cross: list[np.ndarray]):
        self.model = model
        dims = model.dims
        layers = dims.n_text_layers
        names = cache_names(layers)
        self.self_names = names[:2 * layers]
        self.cross = dict(zip(names[2 * layers:], cross, strict=True))
        shape = (1, dims.n_heads, dims.n_text_ctx, dims.d_model // dims.n_heads)
        self.self_caches = [np.zeros(shape, np.float32) for _ in self.self_names]
        self.position = 0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """int64 tokens (batch, t) at the next t positions -> logits (batch, t, vocab)."""
        positions = np.arange(self.position, self.position + tokens.shape[1], dtype=np.int64)
        feed = {"tokens": tokens.astype(np.int64), "positions": positions,
                **dict(zip(self.self_names, self.self_caches, strict=True)), **self.cross}
        # onnxruntime types each output as any value kind; these are dense arrays
        logits, *self.self_caches = cast(list[np.ndarray],
                                         self.model.sessions[STEP_ONNX].run(None, feed))
        self.position += tokens.shape[1]
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        """Keep (and repeat) the hypotheses `rows`: beam search's reordering."""
        self.self_caches = [np.ascontiguousarray(cache[rows]) for cache in self.self_caches]


class OnnxWhisper:
    """The three ORT sessions of an ONNX directory, shaped as the recognizer's model; one
    intra-op thread by default (the bench's setting) and no inter-op parallelism."""

    def __init__(self, directory: Path, threads: int = 1):
        import onnxruntime

        directory = Path(directory)
        missing = [name for name in (*GRAPH_FILES, CONFIG_FILE) if not (directory / name).is_file()]
        if missing:
            raise InputError(f"{directory}: not a Whisper ONNX directory (missing "
                             f"{', '.join(missing)})")
        self.config = json.loads((directory / CONFIG_FILE).read_text())
        if self.config.get("family") != FAMILY:
            raise InputError(f"{directory / CONFIG_FILE}: not a Whisper model")
        self.dims = WhisperDims(**self.config["dims"])
        self.tokenizer = WhisperTokenizer.load(directory)
        self.files = [directory / name for name in GRAPH_FILES]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.sessions = {name: onnxruntime.InferenceSession(
            str(directory / name), options, providers=["CPUExecutionProvider"])
            for name in GRAPH_FILES}

    @property
    def n_frames(self) -> int:
        return self.dims.n_frames

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """int16-scale samples (at least one hop) -> (n_mels, len // HOP) log-mel."""
        (features,) = self.sessions[LOG_MEL_ONNX].run(None, {"signal": padded_signal(samples)})
        return features  # pyright: ignore[reportReturnType]  # a dense array

    def encoder(self, window: np.ndarray) -> list[np.ndarray]:
        """(1, n_mels, n_frames) -> [encoded, cross_k..., cross_v...]."""
        return self.sessions[ENCODE_ONNX].run(  # pyright: ignore[reportReturnType]  # dense
            None, {"mel": window})

    def open_window(self, encoded: list[np.ndarray]) -> OnnxWindow:
        return OnnxWindow(self, encoded[1:])


def load_onnx_whisper(directory: Path, beam: int = 1, plain_text: bool = False,
                      threads: int = 1) -> WhisperRecognizer:
    """A recognizer running an ONNX directory with ONNX Runtime, decoding as the PyTorch
    recognizer does."""
    model = OnnxWhisper(directory, threads)
    return WhisperRecognizer(model, model.tokenizer, model.config,
                             WhisperOptions(SearchOptions(beam=beam), plain_text))
