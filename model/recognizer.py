"""Speech to text with the PyTorch model: the reference every compiled library is checked against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from tinyasr.model.model_dir import load_model_dir
from tinyasr.model.prefix_tree import PrefixTree, tree_decoder_scores
from tinyasr.model.san_m import AsrModel
from tinyasr.model.search import (Hypothesis, attention_rescoring, ctc_greedy,
                                  ctc_prefix_beam_search)
from tinyasr.model.tokenizer import Tokenizer


class DecodeMode(str, Enum):
    CTC_GREEDY = "ctc_greedy"
    CTC_PREFIX_BEAM = "ctc_prefix_beam"
    ATTENTION_RESCORING = "attention_rescoring"


@dataclass
class DecodeOptions:
    mode: DecodeMode = DecodeMode.ATTENTION_RESCORING
    beam: int = 10
    rescoring_ctc_weight: float = 0.5


def decoder_scores(model: AsrModel, encoded: torch.Tensor,
                   hypotheses: Sequence[Hypothesis]) -> np.ndarray:
    """log P(hypothesis + <eos> | audio) under the attention decoder, one per hypothesis, from
    one decoder run over their prefix tree (model/prefix_tree.py).

    encoded: (1, frames, d) encoder output of one utterance."""
    def tree_log_probs(tree: PrefixTree) -> np.ndarray:
        inputs = (torch.from_numpy(a) for a in tree.arrays())
        with torch.no_grad():
            return model.decoder.tree_forward(*inputs, encoded).numpy()

    return tree_decoder_scores(hypotheses, model.sos_eos, model.config.fsmn_kernel,
                               tree_log_probs)


def decode(log_probs: np.ndarray, options: DecodeOptions,
           score_hypotheses=None) -> Hypothesis:
    """One utterance's (frames, vocab) CTC log-probs -> token ids, in the chosen mode."""
    if options.mode == DecodeMode.CTC_GREEDY:
        return ctc_greedy(log_probs)
    nbest = ctc_prefix_beam_search(log_probs, options.beam)
    if options.mode == DecodeMode.CTC_PREFIX_BEAM:
        return nbest[0][0]
    if score_hypotheses is None:
        raise ValueError("attention rescoring needs a decoder")
    return attention_rescoring(nbest, score_hypotheses, options.rescoring_ctc_weight)


class Recognizer:
    """A model and tokenizer ready to transcribe int16-scale 16 kHz audio."""

    def __init__(self, model: AsrModel, tokenizer: Tokenizer,
                 options: DecodeOptions | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.options = options or DecodeOptions()

    @classmethod
    def load(cls, model: Path, options: DecodeOptions | None = None) -> "Recognizer":
        """From a model directory, or a compressed model file run by its reference runner."""
        if Path(model).is_file():
            from tinyasr.model.compressed import load_compressed  # it imports this module

            return cls(*load_compressed(model), options)
        return cls(*load_model_dir(model), options)

    def transcribe(self, samples: np.ndarray) -> str:
        with torch.no_grad():
            log_probs, encoded = self.model.ctc_log_probs(torch.from_numpy(samples)[None])
        tokens = decode(log_probs[0].numpy(), self.options,
                        lambda hypotheses: decoder_scores(self.model, encoded, hypotheses))
        return self.tokenizer.decode(tokens)
