"""Error rates and CTC decoding on hand-made inputs with known answers."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from tinyasr.model.decoding.metrics import char_errors, word_errors
from tinyasr.model.decoding.search import attention_rescoring, ctc_greedy, ctc_prefix_beam_search


def test_error_breakdown():
    counts = char_errors("turn on", "turn of  x")
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 3)
    assert counts.reference_length == 7
    words = word_errors("turn on the light", "turn the lights")
    assert (words.substitutions, words.deletions, words.insertions) == (1, 1, 0)
    assert words.rate == pytest.approx(50.0)
    assert char_errors("你好世界", "你好世").deletions == 1


def frames(*rows: list[float]) -> np.ndarray:
    return np.log(np.array(rows, dtype=np.float64))


def test_greedy_collapses_repeats_and_drops_blanks():
    log_probs = frames([0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1],
                       [0.1, 0.1, 0.8])
    assert ctc_greedy(log_probs) == (1, 1, 2)


def test_prefix_beam_sums_alignments_greedy_cannot():
    # Best path is blank-blank (empty), but "1" has more total probability over its paths.
    log_probs = frames([0.55, 0.45], [0.55, 0.45])
    assert ctc_greedy(log_probs) == ()
    nbest = ctc_prefix_beam_search(log_probs, beam=4)
    assert nbest[0][0] == (1,)
    assert np.exp(nbest[0][1]) == pytest.approx(0.45 * 0.45 + 2 * 0.55 * 0.45)
    assert np.exp(nbest[1][1]) == pytest.approx(0.55 * 0.55)


def _log_add(*values: float) -> float:
    top = max(values)
    return top if top == -math.inf else top + math.log(sum(math.exp(v - top) for v in values))


def textbook_prefix_beam_search(log_probs: np.ndarray, beam: int,
                                blank: int = 0) -> list[tuple[tuple[int, ...], float]]:
    """The prefix beam search as one Python step per prefix and token: the reference."""
    beams = {(): (0.0, -math.inf)}
    for frame in log_probs:
        next_beams: dict = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (p_blank, p_label) in beams.items():
            for token in np.argsort(frame, kind="stable")[::-1][:beam]:  # ties: higher id
                token, p = int(token), float(frame[token])
                if token == blank:
                    entry = next_beams[prefix]
                    entry[0] = _log_add(entry[0], p_blank + p, p_label + p)
                    continue
                entry = next_beams[prefix + (token,)]
                if prefix and prefix[-1] == token:
                    entry[1] = _log_add(entry[1], p_blank + p)
                    same = next_beams[prefix]
                    same[1] = _log_add(same[1], p_label + p)
                else:
                    entry[1] = _log_add(entry[1], p_blank + p, p_label + p)
        ranked = sorted(next_beams.items(), key=lambda item: _log_add(*item[1]), reverse=True)
        beams = {prefix: tuple(scores) for prefix, scores in ranked[:beam]}
    return [(prefix, _log_add(*scores)) for prefix, scores in beams.items()]


@pytest.mark.parametrize("vocab, beam, peaked, blank_lead", [
    (5, 3, False, 0.0), (31, 10, True, 0.0), (31, 10, False, 0.0), (8, 12, True, 0.0),
    (31, 10, True, 6.0), (31, 4, False, 3.0)])
def test_prefix_beam_search_equals_the_textbook_loop(vocab, beam, peaked, blank_lead):
    """Same n-best, same order, same scores, with repeats, merges and (uniform frames) ties:
    the C++ search (the boards' too) against one Python step per prefix and token. With
    `blank_lead`, blank leads most frames as in a model's output, so most extensions fall
    below the search's bound and are never made (ctc_search.h BeamFloor)."""
    rng = np.random.default_rng(vocab + beam)
    logits = rng.normal(size=(60, vocab)) * (4.0 if peaked else 1.0)
    logits[:, 0] += blank_lead
    logits[::7] = 0.0                                     # uniform frames: ties everywhere
    log_probs = (logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)).astype(np.float32)
    log_probs[5, 3] = -np.inf                             # a token that never occurs
    expected = textbook_prefix_beam_search(log_probs, beam)
    nbest = ctc_prefix_beam_search(log_probs, beam)
    assert [prefix for prefix, _ in nbest] == [prefix for prefix, _ in expected]
    assert [score for _, score in nbest] == pytest.approx([score for _, score in expected])


def test_rescoring_picks_the_decoder_preference():
    nbest = [((1,), -1.0), ((2,), -1.2)]
    assert attention_rescoring(nbest, lambda hyps: np.array([-5.0, -1.0])) == (2,)
    assert attention_rescoring(nbest, lambda hyps: np.array([-1.0, -1.0])) == (1,)
