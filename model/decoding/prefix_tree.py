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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

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
    paths: list[list[int]]  # per hypothesis, its nodes from the root: the prefixes scored
    targets: list[list[int]]  # per hypothesis, the token each of its nodes predicts (<eos> last)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The decoder's tree inputs, in its order: tokens, depths, ancestors, history."""
        return self.tokens, self.depths, self.ancestors, self.history

    def scores(self, log_probs: np.ndarray) -> np.ndarray:
        """Per hypothesis, sum of its nodes' log-probs of their targets; log_probs (U, vocab).
        Summed in float64 one term after another (as the boards' tinyasr-run), rounded once."""
        return np.array([np.cumsum(log_probs[path, target], dtype=np.float64)[-1]
                         for path, target in zip(self.paths, self.targets, strict=True)],
                        dtype=np.float32)


def prefix_tree(hypotheses: Sequence[Hypothesis], sos_eos: int, history_width: int) -> PrefixTree:
    """The tree of every prefix of `hypotheses`; history_width = the FSMN's kernel K."""
    children: dict[tuple[int, int], int] = {}
    tokens, depths, parents = [sos_eos], [0], [-1]
    paths = []
    for hypothesis in hypotheses:
        node, path = 0, [0]
        for token in hypothesis:
            child = children.get((node, token))
            if child is None:
                child = children[(node, token)] = len(tokens)
                tokens.append(token)
                depths.append(depths[node] + 1)
                parents.append(node)
            node = child
            path.append(node)
        paths.append(path)
    count = len(tokens)
    ancestors = np.zeros((count, count), dtype=bool)
    history = np.full((count, history_width), count, dtype=np.int64)
    for node in range(count):
        parent = parents[node]
        if parent >= 0:
            ancestors[node] = ancestors[parent]
            history[node, :-1] = history[parent, 1:]
        ancestors[node, node] = True
        history[node, -1] = node
    return PrefixTree(np.array(tokens, dtype=np.int64), np.array(depths, dtype=np.int64),
                      ancestors, history, paths,
                      [list(hypothesis) + [sos_eos] for hypothesis in hypotheses])


TreeLogProbs = Callable[[PrefixTree], np.ndarray]   # a decoder run: tree -> (U, vocab) log-probs


def tree_decoder_scores(hypotheses: Sequence[Hypothesis], sos_eos: int, history_width: int,
                        tree_log_probs: TreeLogProbs) -> np.ndarray:
    """log P(hypothesis + <eos> | audio) under the attention decoder, one per hypothesis, from
    one decoder run over their prefix tree."""
    tree = prefix_tree(hypotheses, sos_eos, history_width)
    return tree.scores(tree_log_probs(tree))
