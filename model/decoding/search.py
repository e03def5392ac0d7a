"""Decoding: CTC greedy, CTC prefix beam search, and attention rescoring of the CTC n-best.

These work on plain arrays of log-probabilities, so the same code decodes the PyTorch model and
the compiled TVM library. Attention rescoring takes a `score_hypotheses` callable that returns the
decoder's log-probability of each hypothesis followed by <eos> (WeNet's recipe: the CTC prefix
beam search proposes, the attention decoder re-ranks).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Hypothesis = tuple[int, ...]
ScoreHypotheses = Callable[[Sequence[Hypothesis]], np.ndarray]

# The C++ search's sources: targets/native/src, beside the rest of the project's C++ (one CMake
# project). A path, not an import: the package tinyasr.targets ships the files (package-data).
NATIVE_DIR = Path(__file__).resolve().parents[2] / "targets" / "native" / "src"
# How the C++ search is compiled on the host and into the boards' transcriber: no contracted
# multiply-adds, so every machine does the same IEEE double arithmetic step by step.
NATIVE_CFLAGS = ["-ffp-contract=off"]


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
    repeated label is merged unless a blank separates the two. Per frame, only the `beam` most
    likely tokens extend a prefix (ties to the higher token id). log_probs: (frames, vocab),
    read as float32 like the models' outputs. The search is C++ (targets/native/src/ctc_search.h),
    the same code the boards' transcriber runs: in numpy it took 7 ms of a 5 s utterance's 19 ms
    on the host, here 0.6 ms.
    """
    log_probs = np.ascontiguousarray(log_probs, dtype=np.float32)
    frames = len(log_probs)
    tokens = np.zeros((beam, frames), dtype=np.int64)
    lengths = np.zeros(beam, dtype=np.int64)
    scores = np.zeros(beam, dtype=np.float64)
    count = _native_search()(log_probs, beam, blank, tokens, lengths, scores)
    return [(tuple(tokens[i, :lengths[i]].tolist()), float(scores[i])) for i in range(count)]


@functools.cache
def _native_search() -> Callable:
    """targets/native/src/ctc_search_ffi.cc built with the system C++ compiler on first use, and
    cached (~/.cache/tvm-ffi, rebuilt by ninja when a source changes)."""
    import tvm_ffi.cpp

    module = tvm_ffi.cpp.load("tinyasr_ctc_search", sources=[str(NATIVE_DIR / "ctc_search_ffi.cc")],
                              extra_cflags=NATIVE_CFLAGS, extra_include_paths=[str(NATIVE_DIR)])
    return module["ctc_prefix_beam_search"]


def attention_rescoring(nbest: list[tuple[Hypothesis, float]], score_hypotheses: ScoreHypotheses,
                        ctc_weight: float = 0.5) -> Hypothesis:
    """Re-rank the CTC n-best by decoder score + ctc_weight * CTC score; returns the winner."""
    hypotheses = [hypothesis for hypothesis, _ in nbest]
    attention_scores = score_hypotheses(hypotheses)
    totals = [attention + ctc_weight * ctc
              for attention, (_, ctc) in zip(attention_scores, nbest, strict=True)]
    return hypotheses[int(np.argmax(totals))]
