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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tinyasr.model.whisper.model import Whisper, WhisperDims
from tinyasr.model.whisper.tokenizer import SpecialTokens

NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0


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

    def log_probs(self, logits: Tensor, first: bool) -> Tensor:
        """(batch, vocab) logits -> log-probabilities over the allowed tokens."""
        mask = self.begin if first else self.always
        return torch.from_numpy(log_softmax(np.where(mask, np.float32(-np.inf),
                                                     logits.numpy())))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """float32 log-softmax over the last axis: x - max - log(sum(exp(x - max))).

    In numpy, on one thread: a search step's few rows of 51864 logits are too little work to
    share, and torch's kernel splits them over its threads and waits for each: on a 2-core host
    with the other core busy, 15 ms a step against 0.05 ms (AMD EPYC Zen 5)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class WindowDecoder:
    """The decoder's state for one window: cross-attention keys/values and self-attention
    caches for a batch of hypotheses, and the next position."""

    def __init__(self, model: Whisper, encoded: Tensor):
        self.decoder = model.decoder
        self.cross_k, self.cross_v = self.decoder.cross_cache(encoded)
        self.self_k, self.self_v = self.decoder.empty_self_cache(encoded.shape[0])
        self.position = 0

    def step(self, tokens: Tensor) -> Tensor:
        """tokens (batch, t) at the next t positions -> logits (batch, t, vocab)."""
        positions = torch.arange(self.position, self.position + tokens.shape[1])
        logits, self.self_k, self.self_v = self.decoder(
            tokens, positions, self.self_k, self.self_v, self.cross_k, self.cross_v)
        self.position += tokens.shape[1]
        return logits

    def reorder(self, rows: Tensor) -> None:
        """Keep (and repeat) the hypotheses `rows` of the batch: beam search's reordering."""
        self.self_k = tuple(k.index_select(0, rows) for k in self.self_k)
        self.self_v = tuple(v.index_select(0, rows) for v in self.self_v)
        if self.cross_k[0].shape[0] != rows.shape[0]:
            repeat = (rows.shape[0], 1, 1, 1)     # one window: every row has the same memory
            self.cross_k = tuple(k[:1].repeat(repeat) for k in self.cross_k)
            self.cross_v = tuple(v[:1].repeat(repeat) for v in self.cross_v)


def open_window(model: Whisper, encoded: Tensor) -> WindowDecoder:
    """The decoder state of one window: a WindowDecoder for the PyTorch model; a compiled model
    (targets/host/whisper_runner.py) has its own `open_window(encoded)` giving a state with the same
    `step(tokens) -> logits` and `reorder(rows)`, so both decode through the same search."""
    opener = getattr(model, "open_window", None)
    return opener(encoded) if opener is not None else WindowDecoder(model, encoded)


def start(model: Whisper, encoded: Tensor, specials: SpecialTokens
          ) -> tuple[WindowDecoder, Tensor, float]:
    """Runs the prompt: (decoder state, first-step logits (1, vocab), no-speech probability)."""
    state = open_window(model, encoded)
    logits = state.step(torch.tensor([[specials.sot, specials.no_timestamps]]))
    no_speech = float(np.exp(log_softmax(logits[0, 0].numpy())[specials.no_speech]))
    return state, logits[:, 1], no_speech


def max_new_tokens(dims: WhisperDims) -> int:
    """CTranslate2's cap on the tokens one window generates."""
    return dims.n_text_ctx // 2


@torch.no_grad()
def greedy_search(model: Whisper, encoded: Tensor, specials: SpecialTokens,
                  suppression: Suppression) -> SearchResult:
    """The most likely token at every step until <|endoftext|>. encoded: (1, frames, d)."""
    state, logits, no_speech = start(model, encoded, specials)
    tokens: list[int] = []
    total = 0.0
    for step in range(max_new_tokens(model.dims)):
        log_probs = suppression.log_probs(logits, first=step == 0)[0]
        token = int(log_probs.argmax())
        total += log_probs[token].item()
        if token == specials.eot:
            break
        tokens.append(token)
        logits = state.step(torch.tensor([[token]]))[:, -1]
    return SearchResult(tokens, total, no_speech)


@torch.no_grad()
def beam_search(model: Whisper, encoded: Tensor, specials: SpecialTokens,
                suppression: Suppression, options: SearchOptions) -> SearchResult:
    """Beam search as described in the module docstring. encoded: (1, frames, d)."""
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
        state.reorder(torch.tensor([row for _, row, _ in extended]))
        logits = state.step(torch.tensor([[tokens[-1]] for tokens, _ in live]))[:, -1]
    else:
        finished += live              # the length cap ends every live hypothesis
    tokens, score = max(finished, key=lambda h: h[1] / max(len(h[0]), 1) ** options.length_penalty)
    return SearchResult(tokens, score, no_speech)


def _ranked_candidates(log_probs: Tensor, live: list[tuple[list[int], float]], beam: int
                       ) -> list[tuple[float, int, int]]:
    """The 2 * beam best (score, row, token) extensions of the live hypotheses, best first:
    enough that `beam` of them do not end, however many of the best do."""
    candidates = []
    for row, (_, score) in enumerate(live):
        top = log_probs[row].topk(2 * beam)
        candidates += [(score + value, row, token) for value, token in
                       zip(top.values.tolist(), top.indices.tolist(), strict=True)]
    return sorted(candidates, key=lambda c: -c[0])[:2 * beam]


def search(model: Whisper, encoded: Tensor, specials: SpecialTokens, suppression: Suppression,
           options: SearchOptions) -> SearchResult:
    """Greedy for beam 1, else beam search."""
    if options.beam <= 1:
        return greedy_search(model, encoded, specials, suppression)
    return beam_search(model, encoded, specials, suppression, options)
