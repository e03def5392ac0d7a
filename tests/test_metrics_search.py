"""Error rates and CTC decoding on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tinyasr.model.metrics import char_errors, word_errors
from tinyasr.model.search import attention_rescoring, ctc_greedy, ctc_prefix_beam_search


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


def test_rescoring_picks_the_decoder_preference():
    nbest = [((1,), -1.0), ((2,), -1.2)]
    assert attention_rescoring(nbest, lambda hyps: np.array([-5.0, -1.0])) == (2,)
    assert attention_rescoring(nbest, lambda hyps: np.array([-1.0, -1.0])) == (1,)
