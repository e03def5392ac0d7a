"""`tinyasr bench`: the same utterances through every runtime, side by side, on this machine.

Rows: PyTorch eager fp32 and dynamic int8, ONNX Runtime fp32 and int8, and the TVM deployables
of the fp32, int8 and (when given) sparse+int8 models, built with the host's tuning database
when one applies; then an untuned build of the fp32 model is the TVM baseline row. Every row
runs the same computation: 16 kHz PCM -> CTC log-probs (the fbank front end included, as in
the compiled encode graph), then CTC prefix beam search with attention rescoring, the decoder
being the row's own.

Each row is measured in its own freshly spawned process, so its peak RSS (VmHWM) is that of
one interpreter holding one runtime and one model; it includes the Python interpreter and the
PyTorch library, which every row imports (decoding uses it). Artifacts (ONNX files, deployables)
are made beforehand in the parent, so no row's memory or time includes an export or a build.

Per length, every row gets the same waveform: the bundled sample utterances concatenated and
cut to exactly the samples the encoder reads for that many seconds. The rows are measured in
`rounds` rounds, every row once per round (a fresh process each time), so a slow spell of a
shared machine falls on every row rather than on one; a row's latency is the median over its
rounds of its median over `repeats` runs after one warm-up run. The encoder time is the encode
call, the pipeline time is encode plus decoding, both from the same runs.

FLOPs are counted once per length with torch.utils.flop_counter.FlopCounterMode on the fp32
PyTorch encode graph (it counts matmuls and convolutions: the multiply-adds, 2 FLOPs each, not
the elementwise ops), and every row's GFLOP/s is that count over its encoder latency: the same
work, so int8 rows are compared on the operations they replace, against the fp32 peak.

TVM rows also list their top kernels: after the timed runs, the row's child process encodes the
reference utterance a few more times with every VM call timed (CompiledModelRunner.
profile_encode), which shows the kernels that dominate the encoder after tuning. The VM's
builtins (allocation, shape bookkeeping) are left out of that list and summed separately.
"""

from __future__ import annotations

import io
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from tinyasr.compile.graphs import TREE_INPUTS, EncoderGraph, encoder_frames, samples_read
from tinyasr.compile.onnx_export import DECODE_ONNX, ENCODE_ONNX, export_onnx, quietly
from tinyasr.model.common.atomic import atomic_write_text, scratch_prefix
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.decoding.prefix_tree import PrefixTree, prefix_tree, tree_decoder_scores
from tinyasr.model.decoding.recognizer import DecodeOptions, decode, decoder_scores
from tinyasr.model.decoding.search import Hypothesis, ctc_prefix_beam_search
from tinyasr.model.network.frontend import SAMPLE_RATE
from tinyasr.model.network.model_dir import SAMPLES_DIR, load_model_dir, model_bytes
from tinyasr.model.network.san_m import AsrModel
from tinyasr.model.network.tokenizer import Tokenizer

if TYPE_CHECKING:   # the runner imports TVM, which only TVM rows' processes load
    from tinyasr.targets.host.runner import KernelTime

REFERENCE_SECONDS = 5.0            # the table's fixed utterance length
FMA_UNITS = 2                      # assumed FMA pipes per core (see `core_peak`)
# (vendor_id, cpu family) whose cores run a 512-bit FMA on both of their two 256-bit pipes:
# AMD Zen 4 (family 25, 0x19; Zen 3, the same family, has no AVX-512)
SPLIT_AVX512_CORES = {("AuthenticAMD", "25")}
PEER_RUNTIMES = ("torch", "onnxruntime")
PROFILE_RUNS = 3                   # instrumented encodes of the reference utterance per TVM row
TOP_KERNELS = 10
VM_BUILTIN_PREFIX = "vm.builtin."


@dataclass(frozen=True)
class RowSpec:
    """One row to measure: which runtime runs which artifact."""

    name: str
    runtime: str           # torch | onnxruntime | tvm
    precision: str         # fp32 | int8 | sparse+int8
    artifact: Path         # model dir (torch), dir of .onnx files, or deployable dir
    artifact_bytes: int
    tuned: bool | None     # TVM rows: whether the deployable was built with a tuning database
    note: str


@dataclass
class LengthResult:
    seconds: float         # audio length actually encoded (the samples the encoder reads)
    flops: int             # encoder FLOPs (FlopCounterMode on the fp32 PyTorch graph)
    encoder_ms: float
    pipeline_ms: float
    gflops: float


@dataclass
class KernelShare:
    """One compiled kernel of a TVM row's encode profile."""

    kernel: str
    ms: float              # per encode of the reference utterance, instrumented
    share: float           # of the time of every instrumented call (kernels and VM builtins)
    calls: int             # per encode


@dataclass
class RowResult:
    name: str
    runtime: str
    precision: str
    tuned: bool | None
    note: str
    skipped: str | None = None
    artifact_bytes: int | None = None
    peak_rss_bytes: int | None = None
    transcript: str | None = None          # of the reference utterance
    encoder_ms: float | None = None        # reference utterance, median
    pipeline_ms: float | None = None
    rescoring_ms: float | None = None      # the reference n-best's rescoring, median
    rtf: float | None = None               # pipeline time / audio time
    encoder_speedup_vs_best_peer: float | None = None   # best peer's time / this row's
    pipeline_speedup_vs_best_peer: float | None = None
    rescoring_speedup_vs_best_peer: float | None = None
    gflops: float | None = None
    peak_fraction: float | None = None     # gflops / the core's fp32 peak
    scaling: list[LengthResult] = field(default_factory=list)
    top_kernels: list[KernelShare] = field(default_factory=list)   # TVM rows, slowest first
    vm_builtins_ms: float | None = None    # TVM rows: the VM builtins' time per encode


@dataclass(frozen=True)
class CorePeak:
    """fp32 peak of one core: lanes x 2 (an FMA is a multiply and an add) x FMA units x GHz."""

    vector_isa: str
    lanes: int
    fma_units: int
    ghz: float | None

    @property
    def gflops(self) -> float | None:
        return None if self.ghz is None else self.lanes * 2 * self.fma_units * self.ghz

    def formula(self) -> str:
        clock = "unknown clock" if self.ghz is None else f"{self.ghz:.2f} GHz"
        total = "" if self.gflops is None else f" = {self.gflops:.1f} GFLOP/s"
        return (f"{self.lanes} fp32 lanes ({self.vector_isa}) x 2 FLOPs per FMA x "
                f"{self.fma_units} FMA unit{'s' if self.fma_units > 1 else ''} x {clock}{total}")


def core_peak(cpuinfo: str | None = None) -> CorePeak:
    """One core's fp32 peak from /proc/cpuinfo: the widest vector ISA in its flags gives the
    lanes, the clock is cpufreq's maximum when the kernel exposes it, else the highest
    "cpu MHz". cpuinfo does not say how many FMA pipes a core has: FMA_UNITS = 2 is what
    x86 cores since Haswell / Zen 2 and Cortex-A7x cores have at their widest vectors, but a
    Zen 4 core (SPLIT_AVX512_CORES) issues one 512-bit FMA per cycle over both its pipes."""
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = set(" ".join(re.findall(r"^(?:flags|Features)\s*:(.*)$", cpuinfo, re.M)).split())
    if "avx512f" in flags:
        isa, lanes = "AVX-512", 16
    elif {"avx2", "fma"} <= flags:
        isa, lanes = "AVX2+FMA", 8
    elif "asimd" in flags:
        isa, lanes = "NEON", 4
    else:
        isa, lanes = "scalar", 1
    core = (_field(cpuinfo, "vendor_id"), _field(cpuinfo, "cpu family"))
    split = isa == "AVX-512" and core in SPLIT_AVX512_CORES
    return CorePeak(isa, lanes, 1 if split else FMA_UNITS, _clock_ghz(cpuinfo))


def _field(cpuinfo: str, name: str) -> str | None:
    """The first value of a /proc/cpuinfo field."""
    found = re.search(rf"^{name}\s*:\s*(.*?)\s*$", cpuinfo, re.M)
    return found.group(1) if found else None


def _clock_ghz(cpuinfo: str) -> float | None:
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.is_file():
        return int(max_freq.read_text()) / 1e6   # kHz
    mhz = [float(value) for value in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)]
    return max(mhz) / 1e3 if mhz else None


def cpu_name() -> str:
    return _field(Path("/proc/cpuinfo").read_text(), "model name") or (
        platform.processor() or platform.machine())


# --- audio and FLOPs ----------------------------------------------------------------------------

def bench_waveforms(lengths: Sequence[float]) -> dict[float, np.ndarray]:
    """For each length in seconds, the bundled samples concatenated (repeated as needed) and cut
    to exactly the samples the encoder reads for that length, so every runtime sees the same."""
    pool = np.concatenate([load_wav(u.wav) for u in read_data_dir(SAMPLES_DIR)])
    waveforms = {}
    for seconds in lengths:
        needed = samples_read(encoder_frames(int(seconds * SAMPLE_RATE)))
        waveforms[seconds] = np.resize(pool, needed).astype(np.float32)
    return waveforms


def encoder_flops(model: AsrModel, waveform: np.ndarray) -> int:
    """FLOPs of one encode call (matmuls and convolutions) on the fp32 PyTorch graph."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        EncoderGraph(model)(torch.from_numpy(waveform)[None])
    return int(counter.get_total_flops())


def reference_nbest(model: AsrModel, waveform: np.ndarray, beam: int) -> list[Hypothesis]:
    """The fp32 PyTorch model's CTC n-best for `waveform`: the hypotheses every row rescores
    for the rescoring column, so that each row's decoder does the same work."""
    with torch.no_grad():
        log_probs, _ = model.ctc_log_probs(torch.from_numpy(waveform)[None])
    return [hypothesis for hypothesis, _ in ctc_prefix_beam_search(log_probs[0].numpy(), beam)]


# --- artifacts (made in the parent) -------------------------------------------------------------

def quantize_torch_dynamic(model: AsrModel) -> AsrModel:
    """PyTorch's dynamic int8: every nn.Linear (int8 weights, activations rounded per call);
    the fbank's fixed matrices are buffers, not Linear layers, and stay fp32."""
    with quietly():
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8,
                                                      inplace=True)


def torch_int8_bytes(model_dir: Path) -> int:
    """Bytes of the dynamically quantized model's saved state dict."""
    buffer = io.BytesIO()
    torch.save(quantize_torch_dynamic(load_model_dir(model_dir)[0]).state_dict(), buffer)
    return buffer.tell()


def quantize_onnx(fp32_dir: Path, out_dir: Path) -> None:
    """ORT's dynamic int8 of the exported graphs: the weight MatMuls (the Linear layers) become
    MatMulInteger; the fbank's fixed mel matrix stays fp32, as in every other int8 row."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True, exist_ok=True)
    with quietly():
        for name in (ENCODE_ONNX, DECODE_ONNX):
            quantize_dynamic(fp32_dir / name, out_dir / name, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"],
                             nodes_to_exclude=["/fbank/MatMul"])


def weight_bytes_by_dtype(deployable: Path) -> dict[str, int]:
    """Bytes of a deployable's weights file per dtype: shows whether int8 weights stayed int8."""
    import tvm

    from tinyasr.compile.deployable import WEIGHTS_FILE

    totals: dict[str, int] = {}
    for tensor in tvm.runtime.load_param_dict_from_file(str(deployable / WEIGHTS_FILE)).values():
        totals[str(tensor.dtype)] = totals.get(str(tensor.dtype), 0) + tensor.numpy().nbytes
    return totals


def tvm_row(name: str, precision: str, model: Path, out: Path, untuned: bool = False) -> RowSpec:
    """Compiles `model` for the host through `build_deployable` (which applies the host's
    tuning database when one exists, unless `untuned`) and labels the row tuned/untuned from
    the manifest."""
    from tinyasr.compile.deployable import build_deployable
    from tinyasr.targets.boards import get_board

    manifest = build_deployable(model, get_board("host"), out, untuned=untuned)
    tuned = manifest["tuning_database"] is not None
    weights = ", ".join(f"{dtype} {size:,}" for dtype, size in weight_bytes_by_dtype(out).items())
    return RowSpec(f"{name} ({'tuned' if tuned else 'untuned'})", "tvm", precision, out,
                   sum(manifest["bytes"].values()), tuned,
                   f"{model.name} compiled; weights file bytes by dtype: {weights}")


def prepare_rows(model: AsrModel, fp32_model: Path, int8_model: Path, sparse_model: Path | None,
                 work: Path, progress: Callable[[str], None]) -> list[RowSpec | RowResult]:
    """Every row's artifact, made in `work` (`model` is the one in `fp32_model`); a row that
    cannot run is a skipped RowResult."""
    progress("exporting ONNX graphs (fp32, then ORT dynamic int8)")
    export_onnx(model, work / "onnx-fp32")
    quantize_onnx(work / "onnx-fp32", work / "onnx-int8")
    rows: list[RowSpec | RowResult] = [
        RowSpec("torch eager fp32", "torch", "fp32", fp32_model, model_bytes(fp32_model), None,
                "the fp32 model"),
        RowSpec("torch dynamic int8", "torch", "int8", fp32_model, torch_int8_bytes(fp32_model),
                None, "quantize_dynamic of the fp32 model's Linear layers (torch cannot load "
                      "the .tac)"),
        RowSpec("ORT fp32", "onnxruntime", "fp32", work / "onnx-fp32",
                model_bytes(work / "onnx-fp32"), None, "torch.onnx export of the fp32 model"),
        RowSpec("ORT int8", "onnxruntime", "int8", work / "onnx-int8",
                model_bytes(work / "onnx-int8"), None,
                "quantize_dynamic of the exported fp32 graphs (ORT cannot load the .tac's "
                "own int8 weights)"),
    ]
    progress("compiling TVM deployables for the host")
    fp32 = tvm_row("TVM fp32", "fp32", fp32_model, work / "tvm-fp32")
    if fp32.tuned:
        rows.append(tvm_row("TVM fp32 baseline", "fp32", fp32_model, work / "tvm-untuned",
                            untuned=True))
    else:
        rows.append(RowResult("TVM fp32 baseline", "tvm", "fp32", False, "",
                              skipped="no tuning database applies: the TVM fp32 row is the "
                                      "untuned build"))
    rows.append(fp32)
    rows.append(tvm_row("TVM int8", "int8", int8_model, work / "tvm-int8"))
    if sparse_model is None:
        rows.append(RowResult("TVM sparse+int8", "tvm", "sparse+int8", None, "",
                              skipped="no --sparse-model given"))
    else:
        rows.append(tvm_row("TVM sparse+int8", "sparse+int8", sparse_model,
                            work / "tvm-sparse-int8"))
    return rows


# --- measuring (in a child process per row) -----------------------------------------------------

class Engine(Protocol):
    def encode(self, waveform: np.ndarray) -> tuple[np.ndarray, Any]:
        """(samples,) PCM -> ((frames, vocab) CTC log-probs, encoder output for `score`)."""

    def score(self, encoded: Any, hypotheses: Sequence[Hypothesis]) -> np.ndarray:
        """Attention-decoder log-probability of each hypothesis."""


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
        return log_probs[0], encoded

    def score(self, encoded: np.ndarray, hypotheses: Sequence[Hypothesis]) -> np.ndarray:
        def tree_log_probs(tree: PrefixTree) -> np.ndarray:
            return self.decoder.run(None, {**dict(zip(TREE_INPUTS, tree.arrays())),
                                           "memory": encoded})[0]

        return tree_decoder_scores(hypotheses, self.sos_eos, self.history_width, tree_log_probs)


class TvmEngine:
    def __init__(self, deployable: Path):
        from tinyasr.targets.host.runner import CompiledModelRunner

        self.runner = CompiledModelRunner(deployable)

    def encode(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.runner.ctc_log_probs(waveform)

    def score(self, encoded: np.ndarray, hypotheses: Sequence[Hypothesis]) -> np.ndarray:
        return self.runner.score_hypotheses(encoded, hypotheses)


def top_kernels(times: Sequence[KernelTime]) -> tuple[list[KernelShare], float]:
    """The TOP_KERNELS slowest compiled kernels of an encode profile (slowest first, as
    `profile_encode` returns it) with their share of the profile's total, and the VM builtins'
    milliseconds."""
    total = sum(t.ms for t in times)
    kernels = [t for t in times if not t.name.startswith(VM_BUILTIN_PREFIX)]
    builtins_ms = total - sum(t.ms for t in kernels)
    return ([KernelShare(t.name, t.ms, t.ms / total, t.calls) for t in kernels[:TOP_KERNELS]],
            builtins_ms)


def load_engine(spec: RowSpec, threads: int, sos_eos: int) -> Engine:
    if spec.runtime == "tvm":
        return TvmEngine(spec.artifact)
    if spec.runtime == "onnxruntime":
        return OnnxEngine(spec.artifact, threads, sos_eos)
    model = load_model_dir(spec.artifact)[0]
    return TorchEngine(quantize_torch_dynamic(model) if spec.precision == "int8" else model)


def time_runs(engine: Engine, waveform: np.ndarray, options: DecodeOptions,
              repeats: int) -> tuple[float, float, Hypothesis]:
    """Median encoder and pipeline milliseconds over `repeats` runs after a warm-up run, and
    the decoded tokens."""
    encoder_seconds, pipeline_seconds = [], []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        log_probs, encoded = engine.encode(waveform)
        encoded_at = time.perf_counter()
        tokens = decode(log_probs, options, lambda hypotheses: engine.score(encoded, hypotheses))
        finished = time.perf_counter()
        encoder_seconds.append(encoded_at - started)
        pipeline_seconds.append(finished - started)
    return (statistics.median(encoder_seconds[1:]) * 1e3,
            statistics.median(pipeline_seconds[1:]) * 1e3, tokens)


def time_rescoring(engine: Engine, waveform: np.ndarray, hypotheses: Sequence[Hypothesis],
                   repeats: int) -> float:
    """Median milliseconds of scoring `hypotheses` with the row's decoder against its encoding
    of `waveform` (prefix tree built, decoder run, scores read), after a warm-up run."""
    _, encoded = engine.encode(waveform)
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        engine.score(encoded, hypotheses)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:]) * 1e3


@dataclass
class Measurement:
    """One row measured in one process."""

    timings: dict[float, tuple[float, float]]   # seconds -> (encoder ms, pipeline ms)
    transcript: str                             # of the reference utterance
    peak_rss_bytes: int
    profile: list[KernelTime]                   # TVM rows: the reference encode's; else empty
    rescoring_ms: float                         # the reference n-best, every row the same


def measure_row(spec: RowSpec, waveforms: dict[float, np.ndarray], tokenizer: Tokenizer,
                options: DecodeOptions, repeats: int, threads: int,
                nbest: Sequence[Hypothesis]) -> Measurement:
    """In a fresh process: the row's timings per length, the reference utterance's transcript,
    this process's peak RSS, the rescoring time of `nbest` (the same hypotheses for
    every row: how much the n-best shares decides the decoder's work), and for TVM rows the
    encode profile of the reference utterance, taken after the timed runs so it cannot slow
    them."""
    os.environ["TVM_NUM_THREADS"] = str(threads)   # read when TVM's thread pool starts
    torch.set_num_threads(threads)
    engine = load_engine(spec, threads, tokenizer.sos_eos)
    timings, transcript = {}, ""
    for seconds, waveform in waveforms.items():
        encoder_ms, pipeline_ms, tokens = time_runs(engine, waveform, options, repeats)
        timings[seconds] = (encoder_ms, pipeline_ms)
        if seconds == REFERENCE_SECONDS:
            transcript = tokenizer.decode(tokens)
    rescoring_ms = time_rescoring(engine, waveforms[REFERENCE_SECONDS], nbest, repeats)
    profile = (engine.runner.profile_encode(waveforms[REFERENCE_SECONDS], PROFILE_RUNS)
               if isinstance(engine, TvmEngine) else [])
    return Measurement(timings, transcript, peak_rss_bytes(), profile, rescoring_ms)


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over from
    the forking parent across exec, so a spawned child would report the parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s*(\d+) kB", status, re.M).group(1)) * 1024


def run_in_child(function: Callable, *args: Any) -> Any:
    """`function(*args)` in a freshly spawned process (its own peak RSS, no state shared)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# --- the whole bench ----------------------------------------------------------------------------

@dataclass
class BenchSettings:
    fp32_model: Path
    int8_model: Path
    sparse_model: Path | None
    lengths: tuple[float, ...]
    threads: int
    repeats: int
    options: DecodeOptions
    rounds: int = 3


def measure_rounds(specs: Sequence[RowSpec], waveforms: dict[float, np.ndarray],
                   settings: BenchSettings, tokenizer: Tokenizer, nbest: Sequence[Hypothesis],
                   progress: Callable[[str], None]) -> list[Measurement]:
    """Each row measured once per round, round after round; per row, its median timings over
    the rounds, its transcript and profile (last round) and its highest peak RSS."""
    rounds: list[list[Measurement]] = [[] for _ in specs]
    for number in range(1, settings.rounds + 1):
        for spec, measured in zip(specs, rounds):
            measured.append(run_in_child(measure_row, spec, waveforms, tokenizer,
                                         settings.options, settings.repeats, settings.threads,
                                         nbest))
            encoder_ms, pipeline_ms = measured[-1].timings[REFERENCE_SECONDS]
            progress(f"  round {number}/{settings.rounds} {spec.name}: encoder {encoder_ms:.1f} "
                     f"ms, pipeline {pipeline_ms:.1f} ms, rescoring "
                     f"{measured[-1].rescoring_ms:.1f} ms")
    merged = []
    for measured in rounds:
        timings = {seconds: tuple(statistics.median(m.timings[seconds][i] for m in measured)
                                  for i in range(2))
                   for seconds in measured[0].timings}
        last = measured[-1]
        merged.append(Measurement(timings, last.transcript,
                                  max(m.peak_rss_bytes for m in measured), last.profile,
                                  statistics.median(m.rescoring_ms for m in measured)))
    return merged


def row_result(spec: RowSpec, measurement: Measurement, waveforms: dict[float, np.ndarray],
               flops: dict[float, int], settings: BenchSettings, peak: CorePeak) -> RowResult:
    timings, profile = measurement.timings, measurement.profile
    scaling = [LengthResult(len(waveforms[s]) / SAMPLE_RATE, flops[s], encoder_ms, pipeline_ms,
                            flops[s] / encoder_ms / 1e6)
               for s, (encoder_ms, pipeline_ms) in timings.items() if s in settings.lengths]
    encoder_ms, pipeline_ms = timings[REFERENCE_SECONDS]
    gflops = flops[REFERENCE_SECONDS] / encoder_ms / 1e6
    kernels, builtins_ms = top_kernels(profile) if profile else ([], None)
    return RowResult(
        spec.name, spec.runtime, spec.precision, spec.tuned, spec.note,
        artifact_bytes=spec.artifact_bytes, peak_rss_bytes=measurement.peak_rss_bytes,
        transcript=measurement.transcript, encoder_ms=encoder_ms, pipeline_ms=pipeline_ms,
        rescoring_ms=measurement.rescoring_ms,
        rtf=pipeline_ms / 1e3 / (len(waveforms[REFERENCE_SECONDS]) / SAMPLE_RATE),
        gflops=gflops, peak_fraction=gflops / peak.gflops if peak.gflops else None,
        scaling=scaling, top_kernels=kernels, vm_builtins_ms=builtins_ms)


def add_peer_ratios(results: Sequence[RowResult]) -> str | None:
    """Fills each row's speedups over the fastest peer (non-TVM row); returns that peer's name."""
    peers = [r for r in results if r.runtime in PEER_RUNTIMES and r.skipped is None]
    if not peers:
        return None
    best_encoder = min(r.encoder_ms for r in peers)
    best_pipeline = min(r.pipeline_ms for r in peers)
    best_rescoring = min(r.rescoring_ms for r in peers)
    for r in results:
        if r.skipped is None:
            r.encoder_speedup_vs_best_peer = best_encoder / r.encoder_ms
            r.pipeline_speedup_vs_best_peer = best_pipeline / r.pipeline_ms
            r.rescoring_speedup_vs_best_peer = best_rescoring / r.rescoring_ms
    return min(peers, key=lambda r: r.encoder_ms).name


def run_bench(settings: BenchSettings, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Prepares and measures every row (printing each as it finishes); returns the report."""
    model, tokenizer = load_model_dir(settings.fp32_model)
    measured = sorted({*settings.lengths, REFERENCE_SECONDS})
    waveforms = bench_waveforms(measured)
    flops = {seconds: encoder_flops(model, waveform) for seconds, waveform in waveforms.items()}
    nbest = reference_nbest(model, waveforms[REFERENCE_SECONDS], settings.options.beam)
    peak = core_peak()
    progress(f"core peak: {peak.formula()}")
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("tinyasr-bench-")) as work:
        rows = prepare_rows(model, settings.fp32_model, settings.int8_model,
                            settings.sparse_model, Path(work), progress)
        specs = [row for row in rows if isinstance(row, RowSpec)]
        measured = dict(zip((spec.name for spec in specs),
                            measure_rounds(specs, waveforms, settings, tokenizer, nbest,
                                           progress)))
    results = [row_result(row, measured[row.name], waveforms, flops, settings, peak)
               if isinstance(row, RowSpec) else row for row in rows]
    for row in results:
        progress(progress_line(row))
    best_peer = add_peer_ratios(results)
    return {
        "machine": {"cpu": cpu_name(), "arch": platform.machine(), "cores": os.cpu_count(),
                    "peak_gflops": peak.gflops, "peak_formula": peak.formula()},
        "threads": settings.threads, "repeats": settings.repeats, "rounds": settings.rounds,
        "reference_seconds": REFERENCE_SECONDS,
        "reference_audio_seconds": len(waveforms[REFERENCE_SECONDS]) / SAMPLE_RATE,
        "lengths": list(settings.lengths),
        "decoding": {"mode": settings.options.mode.value, "beam": settings.options.beam},
        "rescoring": {"hypotheses": len(nbest), "tree_nodes": len(prefix_tree(
            nbest, model.sos_eos, model.config.fsmn_kernel).tokens)},
        "models": {"fp32": str(settings.fp32_model), "int8": str(settings.int8_model),
                   "sparse": None if settings.sparse_model is None else str(settings.sparse_model)},
        "flops_counted_by": "torch.utils.flop_counter.FlopCounterMode on the fp32 PyTorch "
                            "encode graph (matmuls and convolutions), per length",
        "best_peer": best_peer,
        "rows": [asdict(r) for r in results],
    }


def progress_line(row: RowResult) -> str:
    if row.skipped:
        return f"{row.name}: skipped ({row.skipped})"
    return (f"{row.name}: encoder {row.encoder_ms:.1f} ms, pipeline {row.pipeline_ms:.1f} ms, "
            f"rescoring {row.rescoring_ms:.1f} ms, RTF {row.rtf:.4f}, {row.gflops:.1f} GFLOP/s, "
            f"peak RSS {row.peak_rss_bytes / 2**20:.0f} MiB, {row.artifact_bytes:,} bytes")


# --- outputs ------------------------------------------------------------------------------------

def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction:.1%}"


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lengths = report["lengths"]
    lines = [f"Host: {machine['cpu']} ({machine['arch']}), {report['threads']} thread(s); core "
             f"peak: {machine['peak_formula']}. Median over {report['rounds']} rounds (every "
             f"row in turn, each in a fresh process) of the median of {report['repeats']} "
             f"runs after a warm-up; reference utterance: "
             f"{report['reference_audio_seconds']:.2f} s of the bundled samples; decoding: "
             f"{report['decoding']['mode']} (beam {report['decoding']['beam']}); pipeline = "
             f"encoder, CTC search and the rescoring of the row's own n-best; rescoring = of "
             f"the same n-best in every row (the fp32 PyTorch model's for the reference "
             f"utterance: {report['rescoring']['hypotheses']} hypotheses, a prefix tree of "
             f"{report['rescoring']['tree_nodes']} nodes). Speedup = the fastest peer's "
             f"(PyTorch or ONNX Runtime row's) time in that column over the row's; the "
             f"fastest peer encoder: {report['best_peer']}.",
             "",
             "| row | encoder ms | rescoring ms | pipeline ms | RTF | speedup encoder / "
             "rescoring / pipeline | peak RSS MiB | artifact bytes | GFLOP/s | of peak |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        if r["skipped"]:
            lines.append(f"| {r['name']} | skipped: {r['skipped']} |" + " |" * 9)
            continue
        lines.append(
            f"| {r['name']} | {r['encoder_ms']:.1f} | {r['rescoring_ms']:.2f} | "
            f"{r['pipeline_ms']:.1f} | {r['rtf']:.4f} | "
            f"{r['encoder_speedup_vs_best_peer']:.2f}x / "
            f"{r['rescoring_speedup_vs_best_peer']:.2f}x / "
            f"{r['pipeline_speedup_vs_best_peer']:.2f}x | {r['peak_rss_bytes'] / 2**20:.0f} | "
            f"{r['artifact_bytes']:,} | {r['gflops']:.1f} | {_percent(r['peak_fraction'])} |")
    lines += ["", "Scaling: encoder / pipeline ms by audio length.", "",
              "| row | " + " | ".join(f"{s:g} s" for s in lengths) + " |",
              "|---|" + "---:|" * len(lengths)]
    for r in report["rows"]:
        if not r["skipped"]:
            cells = [f"{p['encoder_ms']:.1f} / {p['pipeline_ms']:.1f}" for p in r["scaling"]]
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += ["", f"FLOPs: {report['flops_counted_by']}; GFLOP/s = those FLOPs / encoder time "
                  "(int8 rows too, against the fp32 peak). Peak RSS: the row's own process "
                  "(Python, PyTorch, the runtime and the model). Artifact bytes: model dir "
                  "(PyTorch fp32), saved state dict (PyTorch int8), .onnx files, or the "
                  "deployable's library + weights.", ""]
    lines += [f"- {r['name']}: {r['note'] or r['skipped']}" for r in report["rows"]]
    return "\n".join(lines + top_kernels_markdown(report)) + "\n"


def top_kernels_markdown(report: dict[str, Any]) -> list[str]:
    """One table per measured TVM row: its slowest compiled kernels."""
    lines = ["", f"Top kernels (encoder, {report['reference_seconds']:g} s), TVM rows: every "
             f"VM call of {PROFILE_RUNS} encodes of the reference utterance timed, after the "
             "timed runs; ms and calls per encode; share = of the time of all instrumented "
             "calls, the VM builtins (allocation, shapes) included."]
    for r in report["rows"]:
        if r["top_kernels"]:
            lines += ["", f"{r['name']}: VM builtins {r['vm_builtins_ms']:.3f} ms.", "",
                      "| kernel | ms | share | calls |", "|---|---:|---:|---:|"]
            lines += [f"| {k['kernel']} | {k['ms']:.3f} | {k['share']:.1%} | {k['calls']} |"
                      for k in r["top_kernels"]]
    return lines


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Bars: encoder, rescoring and pipeline time of the reference utterance per row; lines:
    encoder time against audio length."""
    from tinyasr.model.compression.report import agg_pyplot, save_png

    rows = [r for r in report["rows"] if not r["skipped"]]
    figure, (bars, lines) = agg_pyplot().subplots(1, 2, figsize=(12, 4.5))
    positions = np.arange(len(rows))
    for offset, key, label in ((-0.27, "encoder_ms", "encoder"),
                               (0.0, "rescoring_ms", "rescoring (same n-best)"),
                               (0.27, "pipeline_ms", "pipeline")):
        bars.barh(positions + offset, [r[key] for r in rows], height=0.27, label=label)
    bars.set_yticks(positions, [r["name"] for r in rows], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel(f"ms for {report['reference_audio_seconds']:.1f} s of audio")
    bars.set_title(f"latency, {report['threads']} thread(s)")
    bars.legend(loc="lower right", fontsize=8)
    for r in rows:
        lines.plot([p["seconds"] for p in r["scaling"]], [p["encoder_ms"] for p in r["scaling"]],
                   marker="o", label=r["name"])
    lines.set_yscale("log")
    lines.set_xlabel("audio length (s)")
    lines.set_ylabel("encoder ms (log scale)")
    lines.set_title("scaling")
    lines.grid(True, which="both", alpha=0.3)
    lines.legend(fontsize=7)
    figure.tight_layout()
    save_png(figure, path)


def write_outputs(report: dict[str, Any], out: Path) -> None:
    """bench.json, bench.md and bench.png in `out`, each written atomically."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "bench.md", markdown(report))
    write_plot(report, out / "bench.png")
