"""The two graphs a board library runs, as `torch.export` programs.

    encode(waveform (1, 640*F + 720)) -> (ctc log-probs (1, F, vocab), encoder output (1, F, d))
        the whole front end (fbank + CMVN) included, so the library takes 16 kHz PCM samples;
    decode(tokens (U,), depths (U,), ancestors (U, U), history (U, K), memory (1, F, d))
        -> log-probs (U, vocab): the attention decoder over the U nodes of the prefix tree of
        one utterance's hypotheses (model/decoding/prefix_tree.py).

F (encoder frames) and U are dynamic; F is at most MAX_FRAMES, a 30 s window's frames
(callers cut longer audio into windows, model/network/windows.py), which lets the compiler
plan memory for the longest window once (compile/passes/bound_shape_vars.py).

The waveform length is exported as 640*F + 720: exactly the samples the 4x subsampling reads
for F output frames (Kaldi frames drop a partial tail, the stride-2 convolutions drop one more),
so trimming audio to that length changes no output, and every shape in the graph stays an
affine function of F (a free sample count gives floor divisions that neither torch.export's
guard solver nor TVM's reshape analysis can handle).

Buffers (fbank matrices, CMVN statistics) are re-registered as parameters, because the TVM
importer binds buffers into the code as constants and keeps only parameters as inputs: this way
every tensor lands in the weights file and the library holds only code.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.export import Dim, ExportedProgram

from tinyasr.model.decoding.prefix_tree import PrefixTree, prefix_tree
from tinyasr.model.network.framing import (
    MIN_FRAMES,
    SAMPLES_PER_FRAME,
    samples_read,
)
from tinyasr.model.network.san_m import AsrModel
from tinyasr.model.network.windows import MAX_FRAMES


def buffers_as_parameters(module: nn.Module) -> nn.Module:
    """A copy of `module` whose buffers are (frozen) parameters, so export keeps them as inputs."""
    module = copy.deepcopy(module)
    for submodule in module.modules():
        for name, buffer in list(submodule.named_buffers(recurse=False)):
            delattr(submodule, name)
            submodule.register_parameter(name, nn.Parameter(buffer, requires_grad=False))
    return module


class EncoderGraph(nn.Module):
    """Waveform -> (CTC log-probs, encoder output): AsrModel.ctc_log_probs for one utterance."""

    def __init__(self, model: AsrModel):
        super().__init__()
        self.fbank = buffers_as_parameters(model.fbank)
        self.cmvn = buffers_as_parameters(model.cmvn)
        self.encoder = model.encoder
        self.ctc = model.ctc

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.encoder(self.cmvn(self.fbank(waveform)))
        return torch.log_softmax(self.ctc(encoded), dim=-1), encoded


TREE_INPUTS = ("tokens", "depths", "ancestors", "history")   # decode's, before the memory


class DecoderGraph(nn.Module):
    """The prefix tree of one utterance's hypotheses (model/decoding/prefix_tree.py) -> each node's
    decoder log-probs; the (1, frames, d) memory is projected once for all nodes."""

    def __init__(self, model: AsrModel):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: torch.Tensor, depths: torch.Tensor, ancestors: torch.Tensor,
                history: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.decoder.tree_forward(tokens, depths, ancestors, history, memory)


def example_tree(model: AsrModel) -> PrefixTree:
    """A small prefix tree to trace the decode graph with (5 nodes, branching at the root
    and below it)."""
    return prefix_tree([(1, 2), (1, 3), (4,)], model.sos_eos, model.config.fsmn_kernel)


# The dynamic sizes of each graph: (input, axis) -> what the size counts. The waveform's axis
# is SAMPLES_PER_FRAME * frames + samples_read(0) samples; every other one is the size itself.
SHAPE_VARIABLES: dict[str, dict[tuple[str, int], str]] = {
    "encode": {("waveform", 1): "frames"},
    "decode": {("tokens", 0): "nodes", ("depths", 0): "nodes", ("ancestors", 0): "nodes",
               ("ancestors", 1): "nodes", ("history", 0): "nodes", ("memory", 1): "frames"},
}


# The largest value of each dynamic size a caller passes; the tree's nodes grow with the beam,
# which the caller chooses, so they stay unbounded.
SHAPE_BOUNDS = {"frames": MAX_FRAMES}


def _dynamic_shapes(graph: str) -> dict[str, dict[int, Any]]:
    """torch.export's `dynamic_shapes` for one graph, from SHAPE_VARIABLES."""
    dims = {"frames": Dim("frames", min=MIN_FRAMES), "nodes": Dim("nodes", min=1)}
    shapes: dict[str, dict[int, Any]] = {}
    for (name, axis), role in SHAPE_VARIABLES[graph].items():
        size = dims[role]
        shapes.setdefault(name, {})[axis] = (SAMPLES_PER_FRAME * size + samples_read(0)
                                             if name == "waveform" else size)
    return shapes


def export_graphs(model: AsrModel) -> dict[str, ExportedProgram]:
    """{"encode": ..., "decode": ...} exported with dynamic frames and tree nodes."""
    model = model.eval()
    example_frames = 8
    waveform = torch.zeros(1, samples_read(example_frames))
    with torch.no_grad():
        encode = torch.export.export(EncoderGraph(model), (waveform,),
                                     dynamic_shapes=_dynamic_shapes("encode"))
        tree = example_tree(model)
        memory = torch.zeros(1, example_frames, model.config.d_model)
        decode = torch.export.export(DecoderGraph(model),
                                     (*map(torch.from_numpy, tree.arrays()), memory),
                                     dynamic_shapes=_dynamic_shapes("decode"))
    return {"encode": encode, "decode": decode}
