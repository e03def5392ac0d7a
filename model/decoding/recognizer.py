"""Speech to text with the PyTorch model: the reference every compiled library is checked
against."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

# DecodeMode, DecodeOptions and decode live in the torch-free decoding module; imported from
# here too.
from tinyasr.model.decoding.options import DecodeOptions, decode
from tinyasr.model.decoding.prefix_tree import PrefixTree, tree_decoder_scores
from tinyasr.model.decoding.search import Hypothesis
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.san_m import AsrModel
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.network.windows import transcribe_in_windows


def decoder_scores(model: AsrModel, encoded: torch.Tensor,
                   hypotheses: Sequence[Hypothesis]) -> np.ndarray:
    """log P(hypothesis + <eos> | audio) under the attention decoder, one per hypothesis, from
    one decoder run over their prefix tree (model/decoding/prefix_tree.py).

    encoded: (1, frames, d) encoder output of one utterance."""
    def tree_log_probs(tree: PrefixTree) -> np.ndarray:
        tokens, depths, ancestors, history = (torch.from_numpy(a) for a in tree.arrays())
        with torch.no_grad():
            return model.decoder.tree_forward(tokens, depths, ancestors, history,
                                              encoded).numpy()

    return tree_decoder_scores(hypotheses, model.sos_eos, model.config.fsmn_kernel,
                               tree_log_probs)


class Recognizer:
    """A model and tokenizer ready to transcribe int16-scale 16 kHz audio."""

    def __init__(self, model: AsrModel, tokenizer: Tokenizer,
                 options: DecodeOptions | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.options = options or DecodeOptions()

    @classmethod
    def load(cls, model: Path, options: DecodeOptions | None = None) -> Recognizer:
        """From a model directory, or a compressed model file run by its reference runner."""
        if Path(model).is_file():
            from tinyasr.model.network.compressed import load_compressed  # it imports this module

            return cls(*load_compressed(model), options)
        return cls(*load_model_dir(model), options)

    def transcribe(self, samples: np.ndarray) -> str:
        """The text of int16-scale 16 kHz `samples`. Audio longer than
        model/windows.MAX_SECONDS (30 s) is transcribed in windows cut at the quietest point
        near each boundary, the texts joined with a space, so memory stays bounded; shorter
        audio decodes in one piece."""
        return transcribe_in_windows(samples, self._transcribe_window)

    def _transcribe_window(self, samples: np.ndarray) -> str:
        with torch.no_grad():
            log_probs, encoded = self.model.ctc_log_probs(torch.from_numpy(samples)[None])
        tokens = decode(log_probs[0].numpy(), self.options,
                        lambda hypotheses: decoder_scores(self.model, encoded, hypotheses))
        return self.tokenizer.decode(tokens)
