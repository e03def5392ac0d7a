"""The model's encode and decode graphs (compile/graphs.py) as ONNX files, for ONNX Runtime:
what `tinyasr export onnx` writes and the bench's ONNX Runtime rows run.

    encode.onnx  waveform (1, samples) -> log_probs (1, frames, vocab), encoded (1, frames, d)
    decode.onnx  the hypotheses' prefix tree (tokens, depths, ancestors, history; see
                 model/decoding/prefix_tree.py) and memory (1, frames, d)
                 -> log_probs (nodes, vocab)

The waveform is int16-scale 16 kHz samples, the fbank front end is inside the encoder; lengths
(samples, frames, nodes) are dynamic.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from tinyasr.compile.graphs import TREE_INPUTS, DecoderGraph, EncoderGraph, example_tree
from tinyasr.model.common.atomic import scratch_prefix
from tinyasr.model.network.framing import samples_read
from tinyasr.model.network.san_m import AsrModel

ENCODE_ONNX, DECODE_ONNX = "encode.onnx", "decode.onnx"
ONNX_OPSET = 17


@contextmanager
def quietly() -> Iterator[None]:
    """Silences the deprecation warnings and log lines the exporters and quantizers print."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _inline_weight_identities(path: Path) -> None:
    """The TorchScript exporter reaches a shared weight's second and later uses through Identity
    nodes, which ORT's quantizer does not see through (those uses would stay fp32 beside an
    int8 copy): point every use at the initializer itself."""
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    initializers = {tensor.name for tensor in graph.initializer}
    alias = {node.output[0]: node.input[0] for node in graph.node
             if node.op_type == "Identity" and node.input[0] in initializers}
    kept = [node for node in graph.node
            if not (node.op_type == "Identity" and node.output[0] in alias)]
    for node in kept:
        for index, name in enumerate(node.input):
            node.input[index] = alias.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(proto, str(path))


def export_onnx(model: AsrModel, out_dir: Path) -> list[Path]:
    """Writes encode.onnx and decode.onnx into `out_dir` (made if missing); returns their paths.

    The TorchScript exporter (dynamo=False) needs no dependency beyond `onnx`; the dynamo
    exporter would add `onnxscript`. Both graphs' outputs match PyTorch to ~1e-5. Each file is
    written whole in a pid-named hidden dir inside `out_dir`, then renamed into place: a kill
    leaves no half graph (the staging dir of a killed export is deleted by the next)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = 8
    tree = example_tree(model)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix(".tinyasr-onnx-", out_dir),
                                     dir=out_dir) as temp:
        staging = Path(temp)
        with quietly(), torch.no_grad():
            torch.onnx.export(
                EncoderGraph(model).eval(), (torch.zeros(1, samples_read(frames)),),
                str(staging / ENCODE_ONNX), dynamo=False, opset_version=ONNX_OPSET,
                input_names=["waveform"], output_names=["log_probs", "encoded"],
                dynamic_axes={"waveform": {1: "samples"}, "log_probs": {1: "frames"},
                              "encoded": {1: "frames"}})
            torch.onnx.export(
                DecoderGraph(model).eval(),
                (*map(torch.from_numpy, tree.arrays()),
                 torch.zeros(1, frames, model.config.d_model)),
                str(staging / DECODE_ONNX), dynamo=False, opset_version=ONNX_OPSET,
                input_names=[*TREE_INPUTS, "memory"], output_names=["log_probs"],
                dynamic_axes={"tokens": {0: "nodes"}, "depths": {0: "nodes"},
                              "ancestors": {0: "nodes", 1: "nodes"}, "history": {0: "nodes"},
                              "memory": {1: "frames"}, "log_probs": {0: "nodes"}})
        for name in (ENCODE_ONNX, DECODE_ONNX):
            _inline_weight_identities(staging / name)
        for name in (ENCODE_ONNX, DECODE_ONNX):
            os.replace(staging / name, out_dir / name)
    return [out_dir / ENCODE_ONNX, out_dir / DECODE_ONNX]
