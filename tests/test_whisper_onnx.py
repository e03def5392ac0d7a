"""Whisper's ONNX export (compile/whisper_onnx.py) run by ONNX Runtime against PyTorch on the
same weights: log-mel, encoder output, the first step's logits, a two-hypothesis step after a
reorder, and a greedy transcript.

Tolerances: fp32 in both, differing in summation order (MLAS vs. torch's GEMM, 384- to
1536-long sums over four blocks) and in Erf. The encoder output reaches |12|; 1e-2 is ~1e-3 of
that (measured 2e-5 on this utterance, 2.8e-3 on the set's first; TVM's fp32 build measures
3e-3). The logits reach |21|; 1e-3 (measured 2.3e-5 at the prompt, 4.3e-5 for the two
hypotheses) still catches any graph error: a wrong position, cache slot or hypothesis moves
them by whole units. The log-mel is a few matmuls on [-1, 1) samples: 1e-4 (measured 7e-6).
The fp32 export takes ~15 s (the module fixture), each test a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyasr.compile.whisper_manifest import cache_names
from tinyasr.compile.whisper_onnx import STEP_ONNX, write_whisper_onnx
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.pretrained_paths import REAL_SPEECH_DIR
from tinyasr.model.whisper.audio import pad_window
from tinyasr.model.whisper.convert import ensure_whisper_model
from tinyasr.model.whisper.recognizer import WhisperRecognizer

ENCODER_ATOL, LOGITS_ATOL, LOG_MEL_ATOL = 1e-2, 1e-3, 1e-4


@pytest.fixture(scope="module")
def reference() -> WhisperRecognizer:
    torch.set_num_threads(1)
    return WhisperRecognizer.load(ensure_whisper_model())


@pytest.fixture(scope="module")
def onnx_recognizer(tmp_path_factory) -> WhisperRecognizer:
    from tinyasr.targets.host.whisper_onnx_runner import load_onnx_whisper

    out = tmp_path_factory.mktemp("whisper-onnx") / "fp32"
    write_whisper_onnx(ensure_whisper_model(), fp32=out)
    return load_onnx_whisper(out)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_wav(read_data_dir(REAL_SPEECH_DIR)[3].wav)     # a 4.9 s LibriSpeech sentence


def test_fp32_export_matches_pytorch(reference, onnx_recognizer, speech):
    eager, ort_model = reference.model, onnx_recognizer.model
    model = eager.module  # pyright: ignore[reportAttributeAccessIssue]   # EagerWhisper's
    features = eager.log_mel(speech)
    ort_features = ort_model.log_mel(speech)
    assert ort_features.shape == features.shape
    assert np.abs(ort_features - features).max() < LOG_MEL_ATOL
    window = pad_window(features, model.n_frames)[None]
    encoded = eager.encoder(window)
    with torch.no_grad():
        cross_k, cross_v = model.decoder.cross_cache(encoded)
        self_k, self_v = model.decoder.empty_self_cache(1)
        prompt = torch.tensor([[50257, 50362]])
        logits, self_k, self_v = model.decoder(prompt, torch.arange(2), self_k, self_v,
                                               cross_k, cross_v)
    ort_encoded = ort_model.encoder(window)
    assert np.abs(ort_encoded[0] - encoded.numpy()).max() < ENCODER_ATOL
    state = ort_model.open_window(ort_encoded)
    ort_logits = state.step(prompt.numpy())
    assert np.abs(ort_logits - logits.numpy()).max() < LOGITS_ATOL
    # two hypotheses, as beam search makes them: the prompt's caches repeated, one token each
    rows = torch.tensor([0, 0])
    state.reorder(rows.numpy())
    tokens = torch.tensor([[383], [1119]])
    with torch.no_grad():
        logits, _, _ = model.decoder(
            tokens, torch.tensor([2]), tuple(k[rows] for k in self_k),
            tuple(v[rows] for v in self_v), cross_k, cross_v)
    ort_logits = state.step(tokens.numpy())
    assert ort_logits.shape == (2, 1, model.dims.n_vocab)
    assert np.abs(ort_logits - logits.numpy()).max() < LOGITS_ATOL


def test_fp32_transcript_equals_pytorch(reference, onnx_recognizer, speech):
    assert onnx_recognizer.transcribe(speech) == reference.transcribe(speech)


def test_step_stores_the_token_embedding_once(onnx_recognizer):
    import onnx

    model = onnx_recognizer.model
    path = next(p for p in model.files if p.name == STEP_ONNX)  # pyright: ignore[reportAttributeAccessIssue]
    graph = onnx.load(str(path), load_external_data=False).graph
    dims = model.dims
    tables = [t.name for t in graph.initializer
              if sorted(t.dims) == sorted([dims.n_vocab, dims.d_model])]
    assert len(tables) == 1
    names = [i.name for i in graph.input]
    assert names == ["tokens", "positions", *cache_names(dims.n_text_layers)]
