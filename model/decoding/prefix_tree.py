"""The n-best as a prefix tree: attention rescoring runs the decoder once per distinct prefix.

The decoder is causal, so its output at step t of a hypothesis depends only on the tokens up to
t: hypotheses that share a prefix share those steps' outputs. The CTC n-best shares long
prefixes (on the bundled samples, the 10-best of 5 s has 180 distinct prefixes for 650 padded
batch steps, 20 s 457 for 2490), so the decoder runs on the tree's nodes, one row each: node u
is a prefix (the root is <sos> alone), its token the prefix's last, its depth the position.
Each node attends to itself and its ancestors, and its FSMN memory reads its last K - 1
ancestors, where the batch decoder read the previous K - 1 steps: the same numbers per row.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tinyasr.model.decoding.native import native_library
from tinyasr.model.decoding.search import Hypothesis


@dataclass(frozen=True)
class PrefixTree:
    """The decoder's inputs for a set of hypotheses, and where to read their scores.

    Nodes are numbered so that every ancestor comes before its descendants (the root is 0)."""

    tokens: np.ndarray      # (U,) int64: each node's last token, <sos> at the root
    depths: np.ndarray      # (U,) int64: each node's position (its prefix length)
    ancestors: np.ndarray   # (U, U) bool: [u, v] = v is u or an ancestor of u
    history: np.ndarray     # (U, K) int64: [u, i] = u's ancestor K-1-i levels up (i = K-1: u);
    #                         U where the tree has none (the decoder's zero row)
    hypotheses: _Flat       # the hypotheses, laid end to end as the C++ reads them
    node_paths: np.ndarray  # (N + count,) int64: each hypothesis's nodes from the root, in turn
    sos_eos: int

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The decoder's tree inputs, in its order: tokens, depths, ancestors, history."""
        return self.tokens, self.depths, self.ancestors, self.history

    @property
    def paths(self) -> list[list[int]]:
        """Per hypothesis, its nodes from the root: the prefixes scored."""
        return self.hypotheses.split(self.node_paths, extra=1)

    @property
    def targets(self) -> list[list[int]]:
        """Per hypothesis, the token each of its nodes predicts (<eos> last)."""
        return [[*hypothesis, self.sos_eos]
                for hypothesis in self.hypotheses.split(self.hypotheses.tokens)]

    def scores(self, log_probs: np.ndarray) -> np.ndarray:
        """Per hypothesis, sum of its nodes' log-probs of their targets; log_probs (U, vocab).
        Summed in float64 one term after another, rounded once (decoding.h PathScores)."""
        log_probs = np.ascontiguousarray(log_probs, dtype=np.float32)
        flat = self.hypotheses
        scores = np.empty(len(flat.lengths), dtype=np.float32)
        native_library().tinyasr_path_scores(
            flat.tokens.ctypes.data, flat.lengths.ctypes.data, len(flat.lengths),
            self.node_paths.ctypes.data, log_probs.ctypes.data, log_probs.shape[1],
            self.sos_eos, scores.ctypes.data)
        return scores


@dataclass(frozen=True)
class _Flat:
    """Hypotheses laid end to end: tokens (N,) int64 and each one's length (count,) int64."""

    tokens: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, hypotheses: Sequence[Hypothesis]) -> _Flat:
        lengths = np.array([len(hypothesis) for hypothesis in hypotheses], dtype=np.int64)
        tokens = np.fromiter(itertools.chain.from_iterable(hypotheses), dtype=np.int64,
                             count=int(lengths.sum()))
        return cls(tokens, lengths)

    def split(self, values: np.ndarray, extra: int = 0) -> list[list[int]]:
        """`values` laid out as the hypotheses, each `extra` longer, cut into one list each."""
        ends = np.cumsum(self.lengths + extra)
        return [values[end - length - extra:end].tolist()
                for end, length in zip(ends.tolist(), self.lengths.tolist(), strict=True)]


def prefix_tree(hypotheses: Sequence[Hypothesis], sos_eos: int, history_width: int) -> PrefixTree:
    """The tree of every prefix of `hypotheses`; history_width = the FSMN's kernel K >= 1.
    Built by the boards' code (decoding.h BuildDecoderTree)."""
    flat = _Flat.of(hypotheses)
    capacity = len(flat.tokens) + 1                       # the most nodes: no prefix shared
    tokens, depths = np.empty(capacity, dtype=np.int64), np.empty(capacity, dtype=np.int64)
    # as large as the most nodes need; only the tree's rows are written (and their pages used)
    ancestors = np.empty(capacity * capacity, dtype=np.bool_)
    history = np.empty(capacity * history_width, dtype=np.int64)
    paths = np.empty(len(flat.tokens) + len(hypotheses), dtype=np.int64)
    count = native_library().tinyasr_prefix_tree(
        flat.tokens.ctypes.data, flat.lengths.ctypes.data, len(hypotheses), sos_eos,
        history_width, capacity, tokens.ctypes.data, depths.ctypes.data, ancestors.ctypes.data,
        history.ctypes.data, paths.ctypes.data)
    if count < 0:
        raise ValueError(f"prefix_tree: history width {history_width} does not fit")
    return PrefixTree(tokens[:count].copy(), depths[:count].copy(),
                      ancestors[:count * count].reshape(count, count).copy(),
                      history[:count * history_width].reshape(count, history_width).copy(),
                      flat, paths, sos_eos)


TreeLogProbs = Callable[[PrefixTree], np.ndarray]   # a decoder run: tree -> (U, vocab) log-probs


def tree_decoder_scores(hypotheses: Sequence[Hypothesis], sos_eos: int, history_width: int,
                        tree_log_probs: TreeLogProbs) -> np.ndarray:
    """log P(hypothesis + <eos> | audio) under the attention decoder, one per hypothesis, from
    one decoder run over their prefix tree."""
    tree = prefix_tree(hypotheses, sos_eos, history_width)
    return tree.scores(tree_log_probs(tree))
