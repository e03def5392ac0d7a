"""The rows: what each one runs (RowSpec; `prepare_rows` makes every row's artifact) and what
it measured (RowResult, with its LengthResult per audio length and its top KernelShare)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tinyasr.compile.onnx_export import export_onnx
from tinyasr.model.network.model_dir import model_bytes
from tinyasr.model.network.san_m import AsrModel
from tinyasr.schedules.bench.artifacts import quantize_onnx, torch_int8_bytes, weight_bytes_by_dtype


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
    """One compiled kernel of a TVM row's encode or rescoring profile."""

    kernel: str
    ms: float              # per encode (rescoring) of the reference utterance, instrumented
    share: float           # of the time of every instrumented call (kernels and VM builtins)
    calls: int             # per encode (rescoring)


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
    rescoring_top_kernels: list[KernelShare] = field(default_factory=list)   # the same, of
    rescoring_vm_builtins_ms: float | None = None   # the reference n-best's rescoring


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
