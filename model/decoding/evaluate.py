"""Scoring a recognizer on a data dir: CER (and WER) with the sub/del/ins breakdown, in total and
per group of utterances (per TTS engine, seen/unseen text) from one decoding pass."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tinyasr.model.data.datadir import SAMPLE_RATE, Utterance, load_wav
from tinyasr.model.decoding.metrics import ErrorCounts, char_errors, word_errors
from tinyasr.model.network.tokenizer import normalize_text


@dataclass
class Evaluation:
    cer: ErrorCounts = field(default_factory=ErrorCounts)
    wer: ErrorCounts = field(default_factory=ErrorCounts)
    hypotheses: dict[str, str] = field(default_factory=dict)
    # uid -> (cer, wer)
    per_utterance: dict[str, tuple[ErrorCounts, ErrorCounts]] = field(default_factory=dict)
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
        cer, wer = char_errors(reference, hypothesis), word_errors(reference, hypothesis)
        result.cer += cer
        result.wer += wer
        result.hypotheses[utterance.uid] = hypothesis
        result.per_utterance[utterance.uid] = (cer, wer)
    return result


def engine_of(utterance: Utterance) -> str:
    """The TTS engine of a synthesized utterance: its speaker id (else its id) up to the first `_`
    (`tinyasr data synth` names speakers `engine_voice`)."""
    return (utterance.speaker or utterance.uid).split("_", 1)[0]


def group_counts(result: Evaluation, uids: Sequence[str]) -> tuple[ErrorCounts, ErrorCounts]:
    """CER and WER counts of the utterances `uids` of an evaluation."""
    cer, wer = ErrorCounts(), ErrorCounts()
    for uid in uids:
        cer += result.per_utterance[uid][0]
        wer += result.per_utterance[uid][1]
    return cer, wer
