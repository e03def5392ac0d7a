"""Run a Whisper deployable on this machine: the compiled twin of the PyTorch Whisper.

`CompiledWhisper` offers what `WhisperRecognizer` and the search ask of a model
(model/whisper/recognizer.py `RecognizerModel`): `dims`, `n_frames`, `log_mel(samples)`,
`encoder(window)` and `open_window(encoded)` giving a decoder state with `step(tokens) ->
logits` and `reorder(rows)`. So the compiled model decodes through the very same windows,
prompt, suppression, greedy and beam search, no-speech gate and detokenizing as the PyTorch
one; only the arrays come from the VM. Nothing here imports torch or TVM's compiler
(`tinyasr transcribe --lib` runs on TVM's runtime alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import tvm

from tinyasr.compile.deployable import LIBRARY_FILE, MANIFEST_FILE
from tinyasr.compile.whisper_manifest import check_whisper_files, read_whisper_manifest
from tinyasr.model.common.errors import InputError
from tinyasr.model.whisper.audio import HOP, padded_signal
from tinyasr.model.whisper.decoding import SearchOptions
from tinyasr.model.whisper.dims import WhisperDims
from tinyasr.model.whisper.recognizer import WhisperOptions, WhisperRecognizer
from tinyasr.model.whisper.tokenizer import WhisperTokenizer
from tinyasr.targets.host.runner import check_host_machine, load_function_weights, load_host_vm


class CompiledWindow:
    """One window's decoder state in the VM: the cross-attention caches (batch 1, shared by
    every hypothesis), the self-attention caches of the live hypotheses, the next position."""

    def __init__(self, model: CompiledWhisper, cross: list[tvm.runtime.Tensor]):
        self.model, self.cross = model, cross
        dims = model.dims
        zeros = np.zeros((1, dims.n_heads, dims.n_text_ctx, dims.d_model // dims.n_heads),
                         np.float32)
        self.self_caches = [tvm.runtime.tensor(zeros, model.device)
                            for _ in range(2 * dims.n_text_layers)]
        self.position = 0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """int64 tokens (batch, t) at the next t positions -> logits (batch, t, vocab)."""
        device = self.model.device
        positions = np.arange(self.position, self.position + tokens.shape[1], dtype=np.int64)
        # the step writes its rows into self_caches in place and returns them too; they are
        # not read back (over RPC a tensor passed in cannot be returned)
        outputs = self.model.vm["step"](
            tvm.runtime.tensor(tokens.astype(np.int64), device),
            tvm.runtime.tensor(positions, device), *self.self_caches, *self.cross,
            *self.model.weights["step"])
        self.position += tokens.shape[1]
        return outputs[0].numpy()

    def reorder(self, rows: np.ndarray) -> None:
        """Keep (and repeat) the hypotheses `rows`: beam search's reordering. Only the slots
        written so far move: a step reads no later slot before writing it (past a query's
        position the attention weighs a slot 0, and compile/kernels/cached_attention.py never
        reads it). On this machine the caches are reordered where they lie; a board's are
        fetched and sent back whole."""
        # set by CompiledWhisper: this machine's CPU or the board's
        device, written = cast(tvm.runtime.Device, self.model.device), self.position
        if device.dlpack_device_type() != tvm.cpu().dlpack_device_type():
            self.self_caches = [tvm.runtime.tensor(np.ascontiguousarray(cache.numpy()[rows]),
                                                   device)
                                for cache in self.self_caches]
            return
        caches = []
        for cache in self.self_caches:
            view = np.from_dlpack(cache)          # the VM's memory
            moved = view[rows, :, :written]      # a copy: the slots may be written over
            if len(rows) != len(view):            # a new number of hypotheses: new caches
                cache = tvm.runtime.tensor(np.zeros((len(rows), *view.shape[1:]), view.dtype),
                                           device)
            np.from_dlpack(cache)[:, :, :written] = moved
            caches.append(cache)
        self.self_caches = caches


class CompiledWhisper:
    """A Whisper deployable's functions, shaped as the recognizer's model: on this machine's
    CPU, or given the `vm` and `device` of a board (tinyasr.targets.rpc_check), there; the
    weights go to that device."""

    def __init__(self, deployable: Path, device: tvm.runtime.Device | None = None, vm=None):
        deployable = Path(deployable)
        manifest = read_whisper_manifest(deployable)
        check_whisper_files(deployable, manifest)     # before TVM reads any of them
        on_host = vm is None
        if on_host:
            check_host_machine(deployable, manifest)
        self.manifest, self.dims = manifest, WhisperDims(**manifest["dims"])
        self.tokenizer = WhisperTokenizer.load(deployable)
        specials, decoder = self.tokenizer.specials, manifest["decoder"]
        expected = {"sot_sequence": [specials.sot, specials.no_timestamps], "eot": specials.eot,
                    "no_speech": specials.no_speech, "timestamp_begin": specials.timestamp_begin}
        for key, value in expected.items():
            if decoder[key] != value:
                raise InputError(f"{deployable / MANIFEST_FILE}: decoder.{key} {decoder[key]} "
                                 f"is not the tokenizer's ({value})")
        if on_host:
            device = cast(tvm.runtime.Device, tvm.cpu())   # TVM declares tvm_ffi's Device
            vm = load_host_vm(deployable / LIBRARY_FILE,
                              device)  # pyright: ignore[reportArgumentType]  # tvm.cpu()
        self.device, self.vm = device, vm
        self.weights = load_function_weights(deployable, manifest, vm,
                                             None if on_host else device)

    @property
    def n_frames(self) -> int:
        return self.dims.n_frames

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """int16-scale samples (at least one hop) -> (n_mels, len // HOP) log-mel, computed by
        the library on the padded signal."""
        frames = len(samples) // HOP
        signal = tvm.runtime.tensor(padded_signal(samples), self.device)
        out = self.vm["log_mel"](tvm.runtime.ShapeTuple((frames,)), signal,
                                 *self.weights["log_mel"])[0]
        return out.numpy()

    def encoder(self, window: np.ndarray) -> list[tvm.runtime.Tensor]:
        """(1, n_mels, n_frames) -> [encoded, cross_k..., cross_v...] as VM tensors."""
        outputs = self.vm["encode"](tvm.runtime.tensor(window, self.device),
                                    *self.weights["encode"])
        return list(outputs)

    def encoded(self, encoded: list[tvm.runtime.Tensor]) -> np.ndarray:
        """The (1, n_audio_ctx, d) encoder output of `encoder`'s result."""
        return encoded[0].numpy()

    def open_window(self, encoded: list[tvm.runtime.Tensor]) -> CompiledWindow:
        return CompiledWindow(self, encoded[1:])


def load_compiled_whisper(deployable: Path, beam: int = 1, plain_text: bool = False,
                          model: CompiledWhisper | None = None) -> WhisperRecognizer:
    """A recognizer running a Whisper deployable (on this machine, or the board's `model`),
    decoding as the PyTorch recognizer does."""
    model = model or CompiledWhisper(deployable)
    decoder = model.manifest["decoder"]
    config = {"suppress_ids": decoder["suppress_ids"],
              "suppress_ids_begin": decoder["suppress_ids_begin"]}
    return WhisperRecognizer(model, model.tokenizer, config,
                             WhisperOptions(SearchOptions(beam=beam), plain_text))

