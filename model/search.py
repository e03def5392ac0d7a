"""Decoding: CTC greedy, CTC prefix beam search, and attention rescoring of the CTC n-best.

These work on plain arrays of log-probabilities, so the same code decodes the PyTorch model and
the compiled TVM library. Attention rescoring takes a `score_hypotheses` callable that returns the
decoder's log-probability of each hypothesis followed by <eos> (WeNet's recipe: the CTC prefix
beam search proposes, the attention decoder re-ranks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Hypothesis = tuple[int, ...]
ScoreHypotheses = Callable[[Sequence[Hypothesis]], np.ndarray]

NEG_INF = -math.inf


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
    likely tokens extend a prefix. The frame's arithmetic is done on arrays over all
    prefix x token pairs (`_BeamStep`): in the textbook loop of one Python call per pair, the
    search took 5x the encoder's time on a 5 s utterance.
    """
    tree = _PrefixTree()
    nodes, p_blank, p_label = [_PrefixTree.EMPTY], np.zeros(1), np.full(1, NEG_INF)
    for frame in np.asarray(log_probs, dtype=np.float64):
        nodes, p_blank, p_label = _BeamStep(tree, nodes, frame, beam, blank).best(p_blank, p_label)
    return [(tree.spell(node), float(total))
            for node, total in zip(nodes, np.logaddexp(p_blank, p_label))]


class _PrefixTree:
    """Label prefixes as nodes of a tree, one number each: a prefix is compared, looked up and
    extended in time independent of its length (as tuples, a 20 s search took 2x longer)."""

    EMPTY = 0

    def __init__(self) -> None:
        self.parent, self.last = [-1], [-1]
        self._children: dict[tuple[int, int], int] = {}

    def child(self, node: int, label: int) -> int:
        """The node of `node`'s prefix followed by `label`."""
        key = (node, label)
        if key not in self._children:
            self._children[key] = len(self.parent)
            self.parent.append(node)
            self.last.append(label)
        return self._children[key]

    def spell(self, node: int) -> Hypothesis:
        labels = []
        while node != self.EMPTY:
            labels.append(self.last[node])
            node = self.parent[node]
        return tuple(reversed(labels))


class _BeamStep:
    """One frame of the prefix beam search.

    The candidates for the next beam are each prefix kept as it is (the frame is a blank, or
    repeats its last label) and each prefix extended by a likely label. An extension that spells
    a prefix already in the beam adds to that prefix instead. Ties rank as in a dictionary of
    candidates filled prefix by prefix, token by token, and sorted stably: `_order` is the
    (prefix, token rank) pair that first touches a candidate.
    """

    def __init__(self, tree: _PrefixTree, nodes: list[int], frame: np.ndarray, beam: int,
                 blank: int):
        self.tree, self.nodes, self.frame, self.beam, self.blank = tree, nodes, frame, beam, blank
        tokens = np.argsort(frame)[::-1][:beam]
        self.rank = np.full(len(frame), -1)
        self.rank[tokens] = np.arange(len(tokens))
        self.labels = tokens[tokens != blank]
        self.last = np.array([tree.last[node] for node in nodes])
        self.last_rank = np.where(self.last >= 0, self.rank[self.last], -1)

    def _order(self, prefix: np.ndarray, token_rank: np.ndarray,
               after_extension: bool = False) -> np.ndarray:
        return (prefix * (self.beam + 1) + token_rank) * 2 + after_extension

    def best(self, p_blank: np.ndarray,
             p_label: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
        """The next beam: prefix nodes, blank-ending and label-ending log-probabilities."""
        frame, rows = self.frame, np.arange(len(self.nodes))
        total = np.logaddexp(p_blank, p_label)
        # Prefixes kept: a blank ends them, or their last label repeats (merged).
        blank_rank = self.rank[self.blank]
        kept_blank = total + frame[self.blank] if blank_rank >= 0 else np.full_like(total, NEG_INF)
        repeats = self.last_rank >= 0
        kept_label = np.where(repeats, p_label + frame[self.last], NEG_INF)
        untouched = np.iinfo(rows.dtype).max
        kept_order = np.where(repeats, self._order(rows, self.last_rank, True), untouched)
        if blank_rank >= 0:
            kept_order = np.minimum(kept_order, self._order(rows, blank_rank))
        # Prefixes extended by each label: after a blank only, when the label repeats.
        repeated = self.labels[None, :] == self.last[:, None]
        extended = np.where(repeated, p_blank[:, None], total[:, None]) + frame[self.labels]
        extended_order = self._order(rows[:, None], self.rank[self.labels][None, :])
        new = np.ones(extended.shape, dtype=bool)
        column = {int(label): j for j, label in enumerate(self.labels)}
        row_of = {node: row for row, node in enumerate(self.nodes)}
        for child, node in enumerate(self.nodes):
            parent = row_of.get(self.tree.parent[node])
            j = column.get(self.tree.last[node])
            if parent is None or j is None:
                continue
            kept_label[child] = np.logaddexp(kept_label[child], extended[parent, j])
            kept_order[child] = min(kept_order[child], extended_order[parent, j])
            new[parent, j] = False
        kept = kept_order < untouched
        totals = np.concatenate([np.logaddexp(kept_blank, kept_label)[kept], extended[new]])
        orders = np.concatenate([kept_order[kept], extended_order[new]])
        kept_rows, (new_rows, new_columns) = rows[kept], np.nonzero(new)
        nodes, blanks, labels = [], [], []
        for candidate in np.lexsort((orders, -totals))[:self.beam]:
            if candidate < len(kept_rows):
                row = kept_rows[candidate]
                nodes.append(self.nodes[row])
                blanks.append(kept_blank[row])
                labels.append(kept_label[row])
            else:
                row = new_rows[candidate - len(kept_rows)]
                j = new_columns[candidate - len(kept_rows)]
                nodes.append(self.tree.child(self.nodes[row], int(self.labels[j])))
                blanks.append(NEG_INF)
                labels.append(extended[row, j])
        return nodes, np.array(blanks), np.array(labels)


def attention_rescoring(nbest: list[tuple[Hypothesis, float]], score_hypotheses: ScoreHypotheses,
                        ctc_weight: float = 0.5) -> Hypothesis:
    """Re-rank the CTC n-best by decoder score + ctc_weight * CTC score; returns the winner."""
    hypotheses = [hypothesis for hypothesis, _ in nbest]
    attention_scores = score_hypotheses(hypotheses)
    totals = [attention + ctc_weight * ctc
              for attention, (_, ctc) in zip(attention_scores, nbest)]
    return hypotheses[int(np.argmax(totals))]
