"""How closely a compiled deployable must follow the PyTorch model it was compiled from.

fp32 models: the compiled kernels sum in another order than PyTorch's, and nothing else
differs, so the CTC log-probs agree to `FP32_LOG_PROB_TOLERANCE` and the transcripts are equal.

int8 models: both sides compute the same integer matmuls, but each linear layer's input is
rounded to int8 per row from fp32 values that the two sides summed in different orders. A value
within float error of a rounding boundary (x / step = n + 0.5) rounds to the other integer on
one side; that changes the layer's output by a weight column times the row's step, and
everything downstream of it. Which values flip depends on the CPU (PyTorch's oneDNN kernels
differ between AMD and Intel). On the shipped int8 model and the bundled samples, an Intel Xeon
(AVX-512 VNNI, AMX) showed, host deployable against PyTorch: max |log-prob difference| up to
0.30 on 10 of 12 utterances (1e-5 on the other two), the most likely token equal on 98.3% of
frames or more, and one transcript one character apart (1 of 33); a Zen 4 host showed no
flips. A broken kernel or a wrong weight disagrees on most frames and most characters. So int8
log-probs are not compared value by value: the most likely token must agree on at least
`INT8_FRAME_AGREEMENT` of the frames, and the transcripts may differ by at most one character
in `INT8_CHARACTERS_PER_EDIT` (at least one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tinyasr.model.decoding.metrics import char_errors, word_errors
from tinyasr.model.network.int8 import InputQuantizer

FP32_LOG_PROB_TOLERANCE = 1e-3
INT8_FRAME_AGREEMENT = 0.95
INT8_CHARACTERS_PER_EDIT = 20
WHISPER_INT8_WORDS_PER_EDIT = 10


def rounds_activations_to_int8(model: torch.nn.Module) -> bool:
    """Whether any layer of `model` sees int8-rounded inputs (a .tac with int8 activations)."""
    return any(isinstance(hook, InputQuantizer)
               for module in model.modules() for hook in module._forward_pre_hooks.values())


@dataclass(frozen=True)
class Comparison:
    """One utterance, compiled against reference."""

    max_abs_diff: float       # CTC log-probs
    frame_agreement: float    # share of frames whose most likely token is the same
    character_edits: int      # between the two transcripts
    same_text: bool
    ok: bool


def compare(compiled_log_probs: np.ndarray, reference_log_probs: np.ndarray,
            compiled_text: str, reference_text: str, int8: bool,
            log_prob_tolerance: float = FP32_LOG_PROB_TOLERANCE) -> Comparison:
    """Whether a compiled model's (frames, vocab) log-probs and transcript follow the
    reference's closely enough, by the rule for its kind (module docstring)."""
    frames = min(len(compiled_log_probs), len(reference_log_probs))
    compiled, reference = compiled_log_probs[:frames], reference_log_probs[:frames]
    diff = float(np.abs(compiled - reference).max()) if frames else 0.0
    agreement = (float((compiled.argmax(-1) == reference.argmax(-1)).mean()) if frames
                 else 1.0)
    edits = char_errors(reference_text, compiled_text).errors
    if int8:
        ok = agreement >= INT8_FRAME_AGREEMENT and texts_agree(compiled_text, reference_text, True)
    else:
        ok = diff <= log_prob_tolerance and edits == 0
    return Comparison(diff, agreement, edits, edits == 0, ok)


def whisper_texts_agree(compiled_text: str, reference_text: str, int8: bool) -> bool:
    """A Whisper deployable's transcript against PyTorch's fp32 one: equal for fp32; for int8,
    at most one word in WHISPER_INT8_WORDS_PER_EDIT apart (at least one). Its int8 weights are
    not PyTorch's weights and its layer inputs are rounded to int8 per row at run time: a token
    near a tie can come out another word, and which one flips follows the CPU's float order
    (the same int8 deployable said "Walk in the front door." on an Intel Xeon and "Walk the
    front door." on an AMD EPYC host, 3 characters of 23). A broken kernel garbles most words."""
    if not int8:
        return compiled_text == reference_text
    allowed = max(1, len(reference_text.split()) // WHISPER_INT8_WORDS_PER_EDIT)
    return word_errors(reference_text, compiled_text).errors <= allowed


def texts_agree(compiled_text: str, reference_text: str, int8: bool) -> bool:
    """Equal transcripts; for int8, at most one character in INT8_CHARACTERS_PER_EDIT apart."""
    if not int8:
        return compiled_text == reference_text
    allowed = max(1, len(reference_text) // INT8_CHARACTERS_PER_EDIT)
    return char_errors(reference_text, compiled_text).errors <= allowed
