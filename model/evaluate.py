"""Scoring a recognizer on a data dir: CER (and WER) with the sub/del/ins breakdown."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tinyasr.model.datadir import SAMPLE_RATE, Utterance, load_wav
from tinyasr.model.metrics import ErrorCounts, char_errors, word_errors
from tinyasr.model.tokenizer import normalize_text


@dataclass
class Evaluation:
    cer: ErrorCounts = field(default_factory=ErrorCounts)
    wer: ErrorCounts = field(default_factory=ErrorCounts)
    hypotheses: dict[str, str] = field(default_factory=dict)
    audio_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.decode_seconds / max(self.audio_seconds, 1e-9)


class Transcriber(Protocol):
    """Anything that turns int16-scale 16 kHz samples into text (PyTorch or compiled)."""

    def transcribe(self, samples: np.ndarray) -> str: ...


def evaluate(transcriber: Transcriber, utterances: Sequence[Utterance]) -> Evaluation:
    result = Evaluation()
    for utterance in utterances:
        samples = load_wav(utterance.wav)
        started = time.perf_counter()
        hypothesis = transcriber.transcribe(samples)
        result.decode_seconds += time.perf_counter() - started
        result.audio_seconds += len(samples) / SAMPLE_RATE
        reference = normalize_text(utterance.text)
        result.cer += char_errors(reference, hypothesis)
        result.wer += word_errors(reference, hypothesis)
        result.hypotheses[utterance.uid] = hypothesis
    return result
