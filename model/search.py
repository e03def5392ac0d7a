"""Decoding: CTC greedy, CTC prefix beam search, and attention rescoring of the CTC n-best.

These work on plain arrays of log-probabilities, so the same code decodes the PyTorch model and
the compiled TVM library. Attention rescoring takes a `score_hypotheses` callable that returns the
decoder's log-probability of each hypothesis followed by <eos> (WeNet's recipe: the CTC prefix
beam search proposes, the attention decoder re-ranks).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

Hypothesis = tuple[int, ...]
ScoreHypotheses = Callable[[Sequence[Hypothesis]], np.ndarray]

NEG_INF = -math.inf


def _log_add(*values: float) -> float:
    top = max(values)
    if top == NEG_INF:
        return NEG_INF
    return top + math.log(sum(math.exp(v - top) for v in values))


def ctc_greedy(log_probs: np.ndarray, blank: int = 0) -> Hypothesis:
    """Best token per frame, repeats collapsed, blanks dropped. log_probs: (frames, vocab)."""
    best = log_probs.argmax(axis=-1)
    tokens = []
    previous = blank
    for token in best:
        if token != previous and token != blank:
            tokens.append(int(token))
        previous = token
    return tuple(tokens)


def ctc_prefix_beam_search(log_probs: np.ndarray, beam: int = 10,
                           blank: int = 0) -> list[tuple[Hypothesis, float]]:
    """The `beam` best label prefixes with their CTC log-probabilities, best first.

    Each prefix carries two scores: ending in blank and ending in its last label, so that a
    repeated label is merged unless a blank separates the two.
    """
    beams: dict[Hypothesis, tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame in log_probs:
        candidates = np.argsort(frame)[::-1][:beam]
        next_beams: dict[Hypothesis, list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (p_blank, p_label) in beams.items():
            for token in candidates:
                token = int(token)
                p = float(frame[token])
                if token == blank:
                    entry = next_beams[prefix]
                    entry[0] = _log_add(entry[0], p_blank + p, p_label + p)
                    continue
                extended = prefix + (token,)
                entry = next_beams[extended]
                if prefix and prefix[-1] == token:
                    entry[1] = _log_add(entry[1], p_blank + p)   # a blank separated the repeat
                    same = next_beams[prefix]
                    same[1] = _log_add(same[1], p_label + p)       # the repeat is merged
                else:
                    entry[1] = _log_add(entry[1], p_blank + p, p_label + p)
        ranked = sorted(next_beams.items(), key=lambda item: _log_add(*item[1]), reverse=True)
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked[:beam]}
    return [(prefix, _log_add(*scores)) for prefix, scores in beams.items()]


def attention_rescoring(nbest: list[tuple[Hypothesis, float]], score_hypotheses: ScoreHypotheses,
                        ctc_weight: float = 0.5) -> Hypothesis:
    """Re-rank the CTC n-best by decoder score + ctc_weight * CTC score; returns the winner."""
    hypotheses = [hypothesis for hypothesis, _ in nbest]
    attention_scores = score_hypotheses(hypotheses)
    totals = [attention + ctc_weight * ctc
              for attention, (_, ctc) in zip(attention_scores, nbest)]
    return hypotheses[int(np.argmax(totals))]
