"""How to decode the SAN-M model's outputs: the mode, the beam, and `decode` itself.

Kept free of torch (and of numpy until `decode` runs), so that the command line builds its
parser from these defaults and a compiled deployable decodes without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from tinyasr.model.decoding.search import Hypothesis, ScoreHypotheses


class DecodeMode(str, Enum):
    CTC_GREEDY = "ctc_greedy"
    CTC_PREFIX_BEAM = "ctc_prefix_beam"
    ATTENTION_RESCORING = "attention_rescoring"


@dataclass
class DecodeOptions:
    mode: DecodeMode = DecodeMode.ATTENTION_RESCORING
    beam: int = 10
    rescoring_ctc_weight: float = 0.5


def decode(log_probs: np.ndarray, options: DecodeOptions,
           score_hypotheses: ScoreHypotheses | None = None) -> Hypothesis:
    """One utterance's (frames, vocab) CTC log-probs -> token ids, in the chosen mode."""
    from tinyasr.model.decoding.search import (
        attention_rescoring,
        ctc_greedy,
        ctc_prefix_beam_search,
    )

    if options.mode == DecodeMode.CTC_GREEDY:
        return ctc_greedy(log_probs)
    nbest = ctc_prefix_beam_search(log_probs, options.beam)
    if options.mode == DecodeMode.CTC_PREFIX_BEAM:
        return nbest[0][0]
    if score_hypotheses is None:
        raise ValueError("attention rescoring needs a decoder")
    return attention_rescoring(nbest, score_hypotheses, options.rescoring_ctc_weight)
