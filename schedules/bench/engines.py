"""One Engine per runtime (PyTorch, ONNX Runtime, a TVM deployable) for the measured work:
16 kHz PCM -> CTC log-probs (fbank included), and the attention decoder's scores of
hypotheses against that encoding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from tinyasr.compile.graphs import TREE_INPUTS, EncoderGraph
from tinyasr.compile.onnx_export import DECODE_ONNX, ENCODE_ONNX
from tinyasr.model.decoding.prefix_tree import PrefixTree, tree_decoder_scores
from tinyasr.model.decoding.recognizer import decoder_scores
from tinyasr.model.decoding.search import Hypothesis
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.san_m import AsrModel
from tinyasr.schedules.bench.artifacts import quantize_torch_dynamic
from tinyasr.schedules.bench.rows import RowSpec


class Engine(Protocol):
    def encode(self, waveform: np.ndarray) -> tuple[np.ndarray, Any]:
        """(samples,) PCM -> ((frames, vocab) CTC log-probs, encoder output for `score`)."""
        ...

    def score(self, encoded: Any, hypotheses: Sequence[Hypothesis]) -> np.ndarray:
        """Attention-decoder log-probability of each hypothesis."""
        ...


class TorchEngine:
    def __init__(self, model: AsrModel):
        self.model, self.graph = model, EncoderGraph(model).eval()

    def encode(self, waveform: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        with torch.no_grad():
            log_probs, encoded = self.graph(torch.from_numpy(waveform)[None])
        return log_probs[0].numpy(), encoded

    def score(self, encoded: torch.Tensor, hypotheses: Sequence[Hypothesis]) -> np.ndarray:
        return decoder_scores(self.model, encoded, hypotheses)


class OnnxEngine:
    def __init__(self, onnx_dir: Path, threads: int, sos_eos: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.encoder, self.decoder = (
            onnxruntime.InferenceSession(str(onnx_dir / name), options,
                                         providers=["CPUExecutionProvider"])
            for name in (ENCODE_ONNX, DECODE_ONNX))
        self.sos_eos = sos_eos
        history = next(i for i in self.decoder.get_inputs() if i.name == "history")
        self.history_width = int(history.shape[1])

    def encode(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_probs, encoded = self.encoder.run(None, {"waveform": waveform[None]})
        # onnxruntime types each output as any value kind; these two are dense arrays
        return log_probs[0], encoded  # pyright: ignore[reportIndexIssue, reportReturnType]

    def score(self, encoded: np.ndarray, hypotheses: Sequence[Hypothesis]) -> np.ndarray:
        def tree_log_probs(tree: PrefixTree) -> np.ndarray:
            return self.decoder.run(  # pyright: ignore[reportReturnType]  # a dense array
                None, {**dict(zip(TREE_INPUTS, tree.arrays(), strict=True)), "memory": encoded})[0]

        return tree_decoder_scores(hypotheses, self.sos_eos, self.history_width, tree_log_probs)


class TvmEngine:
    def __init__(self, deployable: Path):
        from tinyasr.targets.host.runner import CompiledModelRunner

        self.runner = CompiledModelRunner(deployable)

    def encode(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.runner.ctc_log_probs(waveform)

    def score(self, encoded: np.ndarray, hypotheses: Sequence[Hypothesis]) -> np.ndarray:
        return self.runner.score_hypotheses(encoded, hypotheses)


def load_engine(spec: RowSpec, threads: int, sos_eos: int) -> Engine:
    if spec.runtime == "tvm":
        return TvmEngine(spec.artifact)
    if spec.runtime == "onnxruntime":
        return OnnxEngine(spec.artifact, threads, sos_eos)
    model = load_model_dir(spec.artifact)[0]
    return TorchEngine(quantize_torch_dynamic(model) if spec.precision == "int8" else model)
