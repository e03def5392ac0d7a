"""Run a deployable on this machine with TVM's Relax VM: the compiled twin of `Recognizer`.

Decoding is shared with the PyTorch reference: `tinyasr.model.decoding.options.decode` drives CTC
prefix beam search and attention rescoring, and the hypotheses' prefix tree is built and scored
by the reference's own code (model/decoding/prefix_tree.py), the compiled decoder running the tree.

Nothing here imports torch, and only TVM's runtime is used (tvm.runtime, its Relax VM), so a
process that runs deployables can load TVM without its compiler
(tinyasr.targets.host.tvm_runtime.use_runtime_only_tvm).
"""

from __future__ import annotations

import platform
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import tvm
from tvm.runtime.vm import VirtualMachine, VMInstrumentReturnKind

from tinyasr.compile.deployable import (
    LIBRARY_FILE,
    MANIFEST_FILE,
    TOKENS_FILE,
    WEIGHTS_FILE,
    check_deployable_files,
    computed_weights,
    read_manifest,
)
from tinyasr.model.common.errors import InputError
from tinyasr.model.decoding.options import DecodeOptions, decode
from tinyasr.model.decoding.prefix_tree import PrefixTree, prefix_tree, tree_decoder_scores
from tinyasr.model.decoding.search import Hypothesis
from tinyasr.model.network.framing import MIN_FRAMES, SAMPLE_RATE, encoder_frames, samples_read
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.network.windows import transcribe_in_windows
from tinyasr.targets.boards import check_cpu_features


@dataclass(frozen=True)
class KernelTime:
    """One function the VM called while running a function (a compiled kernel or a
    `vm.builtin.*`): its milliseconds and calls per run."""

    name: str
    ms: float
    calls: int


ELF_MACHINES = {"x86_64": 62, "aarch64": 183, "riscv64": 243}   # ELF e_machine values


def check_host_machine(deployable: Path, manifest: dict) -> None:
    """One line when a deployable's code cannot run on this machine: another architecture, or
    x86-64 extensions this CPU lacks (the manifest's cpu_features), never an illegal
    instruction."""
    if manifest["arch"] != platform.machine():
        raise InputError(f"{deployable}: built for {manifest['target']} "
                         f"({manifest['arch']}); this machine is {platform.machine()}")
    check_cpu_features(deployable, manifest)


def load_host_vm(path: Path, device: tvm.runtime.Device) -> VirtualMachine:
    """A deployable's library loaded into this process as a Relax VM; a file that is not a
    VM library for this machine is one line naming it, not TVM's loader error."""
    with open(path, "rb") as handle:
        head = handle.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise InputError(f"{path}: not a shared library (no ELF header)")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    expected = ELF_MACHINES.get(platform.machine())
    if expected is not None and machine != expected:
        built = next((arch for arch, code in ELF_MACHINES.items() if code == machine),
                     f"ELF machine {machine}")
        raise InputError(f"{path}: a library for {built}, this machine is {platform.machine()}")
    try:
        # load_module's Module is tvm_ffi's, the same object VirtualMachine takes
        return VirtualMachine(tvm.runtime.load_module(str(path)),  # pyright: ignore[reportArgumentType]
                              device)
    except (RuntimeError, OSError, ValueError, AttributeError) as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = lines[-1].strip()[:200] if lines else type(error).__name__
        raise InputError(f"{path}: cannot load the library ({reason})") from None


def load_function_weights(deployable: Path, manifest: dict, vm,
                          device: tvm.runtime.Device | None = None
                          ) -> dict[str, list[tvm.runtime.Tensor]]:
    """Per VM function of the manifest, the weights it takes, in order, on `device` (None: this
    machine's CPU, where they are read): read from the weights file, or made by the function's
    `tables` function in `vm` (the weights the deployable computes when loaded), which is called
    once here."""
    stored = tvm.runtime.load_param_dict_from_file(str(Path(deployable) / WEIGHTS_FILE))
    weights = {key: tensor if device is None else tensor.copyto(device)
               for key, tensor in stored.items()}
    for function in manifest["functions"].values():
        keys = computed_weights(function)
        if keys:
            name, library = function["tables"]["function"], Path(deployable) / LIBRARY_FILE
            try:
                made = list(vm[name]())
            except (AttributeError, RuntimeError, TypeError) as error:
                raise InputError(f"{library}: cannot run {name}, which the manifest says makes "
                                 f"{len(keys)} weights ({str(error).strip()[:200]})") from None
            if len(made) != len(keys):
                raise InputError(f"{library}: {name} made {len(made)} tables, the manifest "
                                 f"names {len(keys)}")
            weights.update(zip(keys, made, strict=True))
    return {name: [weights[key] for key in function["weights"]]
            for name, function in manifest["functions"].items()}


class CompiledModelRunner:
    """A deployable's encode/decode functions: on this machine's CPU, or given the `vm` and
    `device` of a board (tinyasr.targets.rpc_check), there; the weights go to that device."""

    def __init__(self, deployable: Path, device: tvm.runtime.Device | None = None, vm=None):
        deployable = Path(deployable)
        manifest = read_manifest(deployable)
        check_deployable_files(deployable, manifest)   # before TVM reads any of them
        self.tokenizer = Tokenizer.load(deployable / TOKENS_FILE)
        if manifest["sos_eos"] != self.tokenizer.sos_eos:
            raise InputError(f"{deployable / MANIFEST_FILE}: sos_eos {manifest['sos_eos']} is "
                             f"not the <sos/eos> id of {TOKENS_FILE} ({self.tokenizer.sos_eos})")
        on_host = vm is None
        if on_host:
            check_host_machine(deployable, manifest)
            device = cast(tvm.runtime.Device, tvm.cpu())   # TVM declares tvm_ffi's Device
            vm = load_host_vm(deployable / LIBRARY_FILE, device)
        self.device, self.vm = device, vm
        self.weights = load_function_weights(deployable, manifest, vm,
                                             None if on_host else device)
        self.sos_eos = manifest["sos_eos"]
        self.history_width = manifest["decoder_history"]
        self.max_frames = manifest["audio"]["max_frames"]
        self.name = deployable

    def encode_args(self, samples: np.ndarray) -> list[object]:
        """The encode function's arguments for int16-scale 16 kHz samples: frame count,
        (1, samples read) waveform, weights. Audio shorter than MIN_FRAMES encoder frames
        (0.125 s) is zero-padded up to it; audio longer than the deployable's longest window
        (audio.max_frames, 30 s) is refused: transcribe cuts it into windows."""
        samples = np.asarray(samples, dtype=np.float32)
        frames = max(MIN_FRAMES, encoder_frames(len(samples)))
        if frames > self.max_frames:
            raise InputError(f"{self.name}: {len(samples) / SAMPLE_RATE:.2f} s of audio is "
                             f"{frames} encoder frames, over the {self.max_frames} it was "
                             f"compiled for (transcribe cuts long audio into windows)")
        waveform = np.zeros((1, samples_read(frames)), dtype=np.float32)
        used = min(len(samples), waveform.shape[1])
        waveform[0, :used] = samples[:used]
        return [tvm.runtime.ShapeTuple((frames,)), tvm.runtime.tensor(waveform, self.device),
                *self.weights["encode"]]

    def ctc_log_probs(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int16-scale 16 kHz samples -> ((frames, vocab) CTC log-probs, (1, frames, d) encoded)."""
        log_probs, encoded = self.vm["encode"](*self.encode_args(samples))
        return log_probs.numpy()[0], encoded.numpy()

    def profile_encode(self, samples: np.ndarray, runs: int) -> list[KernelTime]:
        """Every function the VM calls while encoding `samples` (see `_profile`)."""
        return self._profile("encode", self.encode_args(samples), runs)

    def profile_rescoring(self, encoded: np.ndarray, hypotheses: Sequence[Hypothesis],
                          runs: int) -> list[KernelTime]:
        """Every function the VM calls while the decoder runs over the prefix tree of
        `hypotheses` against `encoded` (see `_profile`)."""
        tree = prefix_tree(hypotheses, self.sos_eos, self.history_width)
        return self._profile("decode", self.tree_args(tree, encoded), runs)

    def _profile(self, function: str, args: list, runs: int) -> list[KernelTime]:
        """Every function the VM calls while running `function` on `args`, slowest first, as
        mean time and calls per run over `runs` runs: shows which compiled kernels dominate.
        Each VM Call instruction is timed through the VM's instrument hook, unset again
        afterwards (an instrumented VM is slower)."""
        seconds: defaultdict[str, float] = defaultdict(float)
        calls: Counter[str] = Counter()
        started: list[float] = []

        def instrument(func, symbol: str, before_run: bool, ret_value, *call_args) -> int:
            if before_run:
                started.append(time.perf_counter())
            else:
                seconds[symbol] += time.perf_counter() - started.pop()
                calls[symbol] += 1
            return VMInstrumentReturnKind.NO_OP

        # the FFI converts a Python callable (and None, to unset) to the Function TVM declares
        self.vm.set_instrument(instrument)  # pyright: ignore[reportArgumentType]
        try:
            for _ in range(runs):
                self.vm[function](*args)
        finally:
            self.vm.set_instrument(None)  # pyright: ignore[reportArgumentType]
        return [KernelTime(name, total / runs * 1e3, calls[name] // runs)
                for name, total in sorted(seconds.items(), key=lambda item: item[1], reverse=True)]

    def tree_args(self, tree: PrefixTree, memory: np.ndarray) -> list:
        """The decode function's arguments: the tree's arrays, the memory, the weights."""
        inputs = [tvm.runtime.tensor(np.ascontiguousarray(a), self.device)
                  for a in (*tree.arrays(), memory)]
        return [*inputs, *self.weights["decode"]]

    def tree_log_probs(self, tree: PrefixTree, memory: np.ndarray) -> np.ndarray:
        """A prefix tree's nodes and the (1, frames, d) memory -> (U, vocab) log-probs."""
        return self.vm["decode"](*self.tree_args(tree, memory))[0].numpy()

    def score_hypotheses(self, encoded: np.ndarray,
                         hypotheses: Sequence[Hypothesis]) -> np.ndarray:
        """log P(hypothesis + <eos> | audio) per hypothesis, all in one decoder call."""
        return tree_decoder_scores(hypotheses, self.sos_eos, self.history_width,
                                   lambda tree: self.tree_log_probs(tree, encoded))


class CompiledRecognizer:
    """A deployable ready to transcribe, decoding exactly as `Recognizer` does."""

    def __init__(self, runner: CompiledModelRunner, options: DecodeOptions | None = None):
        self.runner, self.tokenizer = runner, runner.tokenizer
        self.options = options or DecodeOptions()

    @classmethod
    def load(cls, deployable: Path, options: DecodeOptions | None = None) -> CompiledRecognizer:
        return cls(CompiledModelRunner(deployable), options)

    def transcribe(self, samples: np.ndarray) -> str:
        """The text of int16-scale 16 kHz `samples`, in the same windows as `Recognizer`
        (model/network/windows.py: audio past 30 s in windows, texts joined with a space)."""
        return transcribe_in_windows(samples, self._transcribe_window)

    def _transcribe_window(self, samples: np.ndarray) -> str:
        if encoder_frames(len(samples)) == 0:   # too short for one frame, as in AsrModel
            return ""
        log_probs, encoded = self.runner.ctc_log_probs(samples)
        tokens = decode(log_probs, self.options,
                        lambda hypotheses: self.runner.score_hypotheses(encoded, hypotheses))
        return self.tokenizer.decode(tokens)
