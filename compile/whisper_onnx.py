"""Whisper's three graphs (compile/whisper_graphs.py: log_mel, encode, step) as ONNX files for
ONNX Runtime, fp32 or int8: what the Whisper bench's ONNX Runtime rows run
(targets/host/whisper_onnx_runner.py).

    log_mel.onnx  signal (160 * frames + 480,) -> log_mel (n_mels, frames); `frames` dynamic
    encode.onnx   mel (1, n_mels, 3000) -> encoded (1, 1500, d), cross_k_0..3, cross_v_0..3
    step.onnx     tokens (batch, t), positions (t,), self_k_i, self_v_i (batch, heads, 448,
                  d_head), cross_k_i, cross_v_i (1, heads, 1500, d_head)
                  -> logits (batch, t, n_vocab), new_self_k_i, new_self_v_i; batch, t dynamic
    config.json, vocabulary.txt, merges.txt   the model dir's config (dims, suppress lists)
                  and tokenizer, so the directory decodes on its own

The modules are whisper_graphs.py's (one definition for TVM and ONNX), exported by the
TorchScript exporter (opset 17, as compile/onnx_export.py: no onnxscript needed).

The tied token embedding: the exporter folds the logits' `weight.t()` into a second, transposed
initializer beside the gather's, so the fp32 file would hold the 80 MB matrix twice. fp32:
`_tie_embedding` points the gather at the transposed copy (a gather along its axis 1, then a
transpose of the few gathered rows) and drops the original: stored once, read as stored.
int8: ORT's dynamic quantization (onnxruntime.quantization.quantize_dynamic, weights int8
symmetric, activations uint8 quantized per call) of encode and step: every MatMul against a
weight, per output channel (one scale per column: per token for the logits), becomes
MatMulInteger (encode: 20, the block linears and the cross keys/values; step: 25, the block
linears and the logits); the Gathers of the token and learned-position tables read uint8 rows
(one scale and zero point per table: ORT quantizes a Gather's table as an activation, per
tensor). Per channel, because per tensor costs two words more on the real-speech set (WER
13.44 % against 12.37 %, CER 4.94 against 4.35 %). That needs the untied export: a shared
initializer would be quantized once, for its first user, and the logits would get the
gather's single scale. The two convolutions, the
attention's activation-by-activation products and log_mel (its DFT and mel matrices are the
front end, not weights) stay fp32.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from tinyasr.compile.onnx_export import ONNX_OPSET, _inline_weight_identities, quietly
from tinyasr.compile.whisper_graphs import EncodeGraph, LogMelGraph, StepGraph
from tinyasr.compile.whisper_manifest import cache_names
from tinyasr.model.common.atomic import scratch_prefix, staged_directory
from tinyasr.model.whisper.audio import HOP, PAD_SAMPLES
from tinyasr.model.whisper.convert import CONFIG_FILE, load_whisper_dir

LOG_MEL_ONNX, ENCODE_ONNX, STEP_ONNX = "log_mel.onnx", "encode.onnx", "step.onnx"
GRAPH_FILES = (LOG_MEL_ONNX, ENCODE_ONNX, STEP_ONNX)
QUANTIZED_OPS = ("MatMul", "Gather")     # what quantize_dynamic is asked to quantize


def step_outputs(layers: int) -> list[str]:
    """The step graph's outputs: logits, then the updated self-attention caches."""
    return ["logits", *(f"new_{name}" for name in cache_names(layers)[:2 * layers])]


def _export_graphs(model, out: Path) -> None:
    """The three graphs, untied (see the module docstring), into `out`."""
    dims = model.dims
    layers, head_dim = dims.n_text_layers, dims.d_model // dims.n_heads
    names = cache_names(layers)
    self_names, cross_names = names[:2 * layers], names[2 * layers:]
    # batch 2 and 3 tokens while tracing: both stay dynamic (named in dynamic_axes)
    example_batch, example_tokens = 2, 3
    caches = ([torch.zeros(example_batch, dims.n_heads, dims.n_text_ctx, head_dim)
               for _ in self_names]
              + [torch.zeros(1, dims.n_heads, dims.n_audio_ctx, head_dim) for _ in cross_names])
    outputs = step_outputs(layers)
    step_axes = {"tokens": {0: "batch", 1: "tokens"}, "positions": {0: "tokens"},
                 "logits": {0: "batch", 1: "tokens"},
                 **{name: {0: "batch"} for name in self_names},
                 **{name: {0: "batch"} for name in outputs[1:]}}
    with quietly(), torch.no_grad():
        torch.onnx.export(
            LogMelGraph().eval(), (torch.zeros(HOP * 8 + PAD_SAMPLES),),
            str(out / LOG_MEL_ONNX), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["signal"], output_names=["log_mel"],
            dynamic_axes={"signal": {0: "samples"}, "log_mel": {1: "frames"}})
        torch.onnx.export(
            EncodeGraph(model).eval(), (torch.zeros(1, dims.n_mels, model.n_frames),),
            str(out / ENCODE_ONNX), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["mel"], output_names=["encoded", *cross_names])
        torch.onnx.export(
            StepGraph(model).eval(),
            (torch.zeros(example_batch, example_tokens, dtype=torch.long),
             torch.arange(example_tokens), *caches),
            str(out / STEP_ONNX), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["tokens", "positions", *names], output_names=outputs,
            dynamic_axes=step_axes)
    for name in GRAPH_FILES:
        _inline_weight_identities(out / name)


def _tie_embedding(path: Path) -> None:
    """The step graph with the token embedding stored once: the Gather of the (vocab, d) table
    reads the logits' folded (d, vocab) transpose along axis 1 instead, then transposes the
    gathered (d, batch, t) to (batch, t, d); the (vocab, d) initializer is dropped."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    tables = {t.name: numpy_helper.to_array(t) for t in graph.initializer if len(t.dims) == 2}
    pairs = [(node, name) for node in graph.node if node.op_type == "Gather"
             and node.input[0] in tables
             for name, other in tables.items()
             if other.shape == tables[node.input[0]].shape[::-1]
             and np.array_equal(other, tables[node.input[0]].T)]
    (gather, transposed), = pairs    # the token embedding's gather and the logits' matrix
    uses = [node for node in graph.node if gather.input[0] in node.input]
    assert uses == [gather], "the embedding table has users besides its gather"
    gathered = gather.output[0] + "_by_column"
    transpose = helper.make_node("Transpose", [gathered], [gather.output[0]],
                                 name=(gather.name or "embedding") + "_rows", perm=[1, 2, 0])
    table_name = gather.input[0]
    gather.input[0], gather.output[0] = transposed, gathered
    del gather.attribute[:]
    gather.attribute.append(helper.make_attribute("axis", 1))
    nodes = list(graph.node)
    nodes.insert(nodes.index(gather) + 1, transpose)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name != table_name]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(proto, str(path))


def _quantize(source: Path, target: Path) -> None:
    """ORT's dynamic int8 of one graph (see the module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quietly():
        quantize_dynamic(source, target, op_types_to_quantize=list(QUANTIZED_OPS),
                         per_channel=True, weight_type=QuantType.QInt8)


def write_whisper_onnx(model_dir: Path, fp32: Path | None = None,
                      int8: Path | None = None) -> None:
    """Writes the ONNX directory of the module docstring for the Whisper model dir `model_dir`:
    fp32 into `fp32`, int8 into `int8` (either may be None), both from one export; each
    directory is staged beside itself and renamed into place whole."""
    model, tokenizer, _ = load_whisper_dir(model_dir)
    config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
    with tempfile.TemporaryDirectory(prefix=scratch_prefix(".tinyasr-whisper-onnx-")) as temp:
        raw = Path(temp)
        _export_graphs(model.eval(), raw)
        for out, encoding in ((int8, "int8"), (fp32, "fp32")):
            if out is None:
                continue
            with staged_directory(Path(out)) as staging:
                if encoding == "int8":
                    for name in (ENCODE_ONNX, STEP_ONNX):
                        _quantize(raw / name, staging / name)
                    shutil.copyfile(raw / LOG_MEL_ONNX, staging / LOG_MEL_ONNX)
                else:          # last: tying rewrites the untied step the int8 one is made of
                    _tie_embedding(raw / STEP_ONNX)
                    for name in GRAPH_FILES:
                        shutil.copyfile(raw / name, staging / name)
                (staging / CONFIG_FILE).write_text(
                    json.dumps({**config, "weights_encoding": encoding}, indent=2) + "\n")
                tokenizer.save(staging)
