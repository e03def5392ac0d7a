"""Greedy and beam search for one 30 s window: English, no timestamps, KV-cached decoder.

The prompt is `<|startoftranscript|> <|notimestamps|>` (tiny.en is English-only: no language
or task token). Both prompt tokens run in one decoder call; the logits at <|startoftranscript|>
give the no-speech probability (softmax at the <|nocaptions|> id), those at <|notimestamps|>
the first text token's distribution.

At every step these tokens get -inf logits before the log-softmax, as CTranslate2 does for
faster-whisper: the model config's `suppress_ids` (non-speech symbols such as brackets and
music notes, plus the control tokens), and all timestamp tokens (we never ask for them); at
the first step also `suppress_ids_begin` (a space and <|endoftext|>: Whisper's
suppress_blank, so a window cannot start blank). At most n_text_ctx // 2 (224) tokens are
generated, as CTranslate2 caps them.

Silence: a window yields no text when Whisper's own no-speech rule fires: no-speech
probability > 0.6 and the average log-probability (sum over the text tokens and
<|endoftext|>, divided by their count) < -1.0, faster-whisper's defaults. It catches digital
silence and low noise (tests/test_whisper.py) without an energy threshold that could cut
quiet speech.

Beam search follows CTranslate2's (what faster-whisper runs): each step ranks the 2 * beam best
extensions of the live hypotheses by summed log-probability; those among the first `beam` that
end in <|endoftext|> are finished, the others stay live, topped up to `beam` from the rest of
the ranking (ending ones there are dropped); the search stops when `beam * patience` are
finished (at the length cap every live one finishes), and the best finished hypothesis by
sum of log-probabilities / (tokens ** length_penalty) wins.

The search is numpy on both sides of the model: it asks a `DecodingModel` (the PyTorch model
through eager.py, or a compiled or exported one in targets/host) for a `WindowState` per window
and feeds it int64 token arrays, getting float32 logits back. So a process that runs a
deployable decodes without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tinyasr.model.whisper.dims import WhisperDims
from tinyasr.model.whisper.tokenizer import SpecialTokens

NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0


class WindowState(Protocol):
    """One window's decoder state: its caches for the live hypotheses, and the next position."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """int64 tokens (batch, t) at the next t positions -> float32 logits (batch, t, vocab)."""
        ...

    def reorder(self, rows: np.ndarray) -> None:
        """Keep (and repeat) the hypotheses `rows` (int64) of the batch: beam search's
        reordering."""
        ...


class DecodingModel(Protocol):
    """What the search asks of a model: its sizes and a decoder state per encoded window."""

    @property
    def dims(self) -> WhisperDims: ...

    def open_window(self, encoded: Any) -> WindowState:
        """The decoder state of one window, from what the model's encoder returned."""
        ...


@dataclass
class SearchOptions:
    beam: int = 1                      # 1: greedy
    patience: float = 1.0
    length_penalty: float = 1.0
    no_speech_threshold: float = NO_SPEECH_THRESHOLD
    log_prob_threshold: float = LOG_PROB_THRESHOLD


@dataclass
class SearchResult:
    tokens: list[int]                  # text tokens, without the prompt and <|endoftext|>
    sum_logprob: float                 # including <|endoftext|>'s
    no_speech_prob: float

    @property
    def avg_logprob(self) -> float:
        return self.sum_logprob / (len(self.tokens) + 1)

    def is_silence(self, options: SearchOptions) -> bool:
        return (self.no_speech_prob > options.no_speech_threshold
                and self.avg_logprob < options.log_prob_threshold)


class Suppression:
    """Boolean masks over the vocabulary of the tokens never allowed / not allowed first."""

    def __init__(self, n_vocab: int, specials: SpecialTokens, suppress_ids: list[int],
                 suppress_ids_begin: list[int]):
        self.always = np.zeros(n_vocab, dtype=np.bool_)
        self.always[np.asarray(suppress_ids, dtype=np.int64)] = True
        self.always[specials.timestamp_begin:] = True
        self.begin = self.always.copy()
        self.begin[np.asarray(suppress_ids_begin, dtype=np.int64)] = True

    def log_probs(self, logits: np.ndarray, first: bool) -> np.ndarray:
        """(batch, vocab) logits -> log-probabilities over the allowed tokens."""
        mask = self.begin if first else self.always
        return log_softmax(np.where(mask, np.float32(-np.inf), logits))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """float32 log-softmax over the last axis: x - max - log(sum(exp(x - max))).

    In numpy, on one thread: a search step's few rows of 51864 logits are too little work to
    share, and torch's kernel splits them over its threads and waits for each: on a 2-core host
    with the other core busy, 15 ms a step against 0.05 ms (AMD EPYC Zen 5)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def start(model: DecodingModel, encoded: Any, specials: SpecialTokens
          ) -> tuple[WindowState, np.ndarray, float]:
    """Runs the prompt: (decoder state, first-step logits (1, vocab), no-speech probability)."""
    state = model.open_window(encoded)
    logits = state.step(np.array([[specials.sot, specials.no_timestamps]], np.int64))
    no_speech = float(np.exp(log_softmax(logits[0, 0])[specials.no_speech]))
    return state, logits[:, 1], no_speech


def max_new_tokens(dims: WhisperDims) -> int:
    """CTranslate2's cap on the tokens one window generates."""
    return dims.n_text_ctx // 2


def greedy_search(model: DecodingModel, encoded: Any, specials: SpecialTokens,
                  suppression: Suppression) -> SearchResult:
    """The most likely token at every step until <|endoftext|>. encoded: what the model's
    encoder returned for one window."""
    state, logits, no_speech = start(model, encoded, specials)
    tokens: list[int] = []
    total = 0.0
    for step in range(max_new_tokens(model.dims)):
        log_probs = suppression.log_probs(logits, first=step == 0)[0]
        token = int(log_probs.argmax())
        total += float(log_probs[token])
        if token == specials.eot:
            break
        tokens.append(token)
        logits = state.step(np.array([[token]], np.int64))[:, -1]
    return SearchResult(tokens, total, no_speech)


def beam_search(model: DecodingModel, encoded: Any, specials: SpecialTokens,
                suppression: Suppression, options: SearchOptions) -> SearchResult:
    """Beam search as described in the module docstring. encoded: as for greedy_search."""
    beam = options.beam
    state, logits, no_speech = start(model, encoded, specials)
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for step in range(max_new_tokens(model.dims)):
        ranked = _ranked_candidates(suppression.log_probs(logits, first=step == 0), live, beam)
        finished += [(live[row][0], score) for score, row, token in ranked[:beam]
                     if token == specials.eot]
        extended = [(score, row, token) for score, row, token in ranked[:beam]
                    if token != specials.eot]
        extended += [c for c in ranked[beam:] if c[2] != specials.eot][:beam - len(extended)]
        live = [(live[row][0] + [token], score) for score, row, token in extended]
        if len(finished) >= round(beam * options.patience):
            break
        state.reorder(np.array([row for _, row, _ in extended], np.int64))
        logits = state.step(np.array([[tokens[-1]] for tokens, _ in live], np.int64))[:, -1]
    else:
        finished += live              # the length cap ends every live hypothesis
    tokens, score = max(finished, key=lambda h: h[1] / max(len(h[0]), 1) ** options.length_penalty)
    return SearchResult(tokens, score, no_speech)


def _ranked_candidates(log_probs: np.ndarray, live: list[tuple[list[int], float]], beam: int
                       ) -> list[tuple[float, int, int]]:
    """The 2 * beam best (score, row, token) extensions of the live hypotheses, best first:
    enough that `beam` of them do not end, however many of the best do."""
    candidates = []
    for row, (_, score) in enumerate(live):
        tokens = top_tokens(log_probs[row], 2 * beam)
        candidates += [(score + value, row, token) for value, token in
                       zip(log_probs[row, tokens].tolist(), tokens.tolist(), strict=True)]
    return sorted(candidates, key=lambda c: -c[0])[:2 * beam]


def top_tokens(log_probs: np.ndarray, k: int) -> np.ndarray:
    """The k highest entries' indices, highest first; among equal values the lower index first,
    the boundary's ties included (which of them make the cut is decided the same way)."""
    k = min(k, log_probs.shape[0])
    kth = -np.partition(-log_probs, k - 1)[k - 1]          # the k-th highest value
    above = np.flatnonzero(log_probs > kth)
    best = np.concatenate([above, np.flatnonzero(log_probs == kth)[:k - len(above)]])
    return best[np.lexsort((best, -log_probs[best]))]


def search(model: DecodingModel, encoded: Any, specials: SpecialTokens, suppression: Suppression,
           options: SearchOptions) -> SearchResult:
    """Greedy for beam 1, else beam search."""
    if options.beam <= 1:
        return greedy_search(model, encoded, specials, suppression)
    return beam_search(model, encoded, specials, suppression, options)
