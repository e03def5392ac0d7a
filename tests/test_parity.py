"""Deployables against their PyTorch reference, by the rule of compile/parity.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tinyasr.compile.deployable import build_deployable
from tinyasr.compile.parity import (
    FP32_LOG_PROB_TOLERANCE,
    INT8_FRAME_AGREEMENT,
    compare,
    rounds_activations_to_int8,
    texts_agree,
    whisper_texts_agree,
)
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.decoding.recognizer import Recognizer
from tinyasr.model.network.compressed import load_compressed
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL, DEFAULT_MODEL, SAMPLES_DIR
from tinyasr.targets.boards import get_board
from tinyasr.targets.host.runner import CompiledModelRunner, CompiledRecognizer


def _log_probs(frames: int, vocab: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(frames, vocab)).astype(np.float32)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_fp32_needs_close_log_probs_and_the_same_text():
    reference = _log_probs(50, 8, 0)
    assert compare(reference + FP32_LOG_PROB_TOLERANCE / 2, reference, "a b", "a b", False).ok
    assert not compare(reference + 2 * FP32_LOG_PROB_TOLERANCE, reference, "a b", "a b",
                       False).ok
    assert not compare(reference, reference, "a c", "a b", False).ok


def test_int8_allows_a_flipped_frame_but_not_a_broken_kernel():
    reference = _log_probs(100, 8, 0)
    flipped = reference.copy()
    flipped[7] = flipped[7][::-1]               # one frame's ranking changes, as after a flip
    text = "turn the lights off in the kitchen"  # 34 characters: one edit allowed
    result = compare(flipped, reference, text.replace("kitchen", "kitchan"), text, True)
    assert result.ok and result.frame_agreement >= INT8_FRAME_AGREEMENT
    assert result.max_abs_diff > 0.1            # value by value it would fail fp32's rule
    broken = _log_probs(100, 8, 1)              # another model's output
    assert not compare(broken, reference, text, text, True).ok
    assert not texts_agree("turn the light of in the kitchen", text, True)   # two edits


def test_whisper_int8_may_flip_one_word_in_ten_but_fp32_none():
    reference = "Walk in the front door."
    assert whisper_texts_agree("Walk the front door.", reference, True)   # seen on AMD EPYC
    assert not whisper_texts_agree("Walk the front door.", reference, False)
    assert not whisper_texts_agree("Walk the front floor.", reference, True)
    assert whisper_texts_agree(reference, reference, False)


def test_the_shipped_models_are_told_apart():
    assert rounds_activations_to_int8(load_compressed(COMPRESSED_MODEL)[0])
    assert not rounds_activations_to_int8(load_model_dir(DEFAULT_MODEL)[0])


@pytest.mark.slow  # compiles the shipped int8 model (minutes)
def test_shipped_int8_deployable_follows_its_reference_on_this_cpu(tmp_path: Path):
    """The check rpc-test applies, on the host: it must hold on whatever x86-64 CPU runs it."""
    build_deployable(COMPRESSED_MODEL, get_board("host"), tmp_path / "host")
    runner = CompiledModelRunner(tmp_path / "host")
    compiled, reference = CompiledRecognizer(runner), Recognizer.load(COMPRESSED_MODEL)
    for utterance in read_data_dir(SAMPLES_DIR):
        samples = load_wav(utterance.wav)
        log_probs, _ = runner.ctc_log_probs(samples)
        with torch.no_grad():
            expected, _ = reference.model.ctc_log_probs(torch.from_numpy(samples)[None])
        result = compare(log_probs, expected[0].numpy(), compiled.transcribe(samples),
                         reference.transcribe(samples), int8=True)
        assert result.ok, (utterance.uid, result)
