"""A row's measurement as its RowResult: latencies, real-time factor, GFLOP/s against the
core's peak, top kernels, and the speedups over the fastest peer (PyTorch or ONNX Runtime row)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tinyasr.model.network.framing import SAMPLE_RATE
from tinyasr.schedules.bench.cpu import CorePeak
from tinyasr.schedules.bench.harness import Measurement
from tinyasr.schedules.bench.rows import KernelShare, LengthResult, RowResult, RowSpec
from tinyasr.schedules.bench.workload import REFERENCE_SECONDS

if TYPE_CHECKING:   # the runner imports TVM, which only TVM rows' processes load
    from tinyasr.targets.host.runner import KernelTime

PEER_RUNTIMES = ("torch", "onnxruntime")
TOP_KERNELS = 10
VM_BUILTIN_PREFIX = "vm.builtin."


def top_kernels(times: Sequence[KernelTime]) -> tuple[list[KernelShare], float]:
    """The TOP_KERNELS slowest compiled kernels of a profile (slowest first, as the runner's
    profile_encode and profile_rescoring return it) with their share of the profile's total,
    and the VM builtins' milliseconds."""
    total = sum(t.ms for t in times)
    kernels = [t for t in times if not t.name.startswith(VM_BUILTIN_PREFIX)]
    builtins_ms = total - sum(t.ms for t in kernels)
    return ([KernelShare(t.name, t.ms, t.ms / total, t.calls) for t in kernels[:TOP_KERNELS]],
            builtins_ms)


def row_result(spec: RowSpec, measurement: Measurement, waveforms: dict[float, np.ndarray],
               flops: dict[float, int], lengths: Sequence[float], peak: CorePeak) -> RowResult:
    timings, profile = measurement.timings, measurement.profile
    scaling = [LengthResult(len(waveforms[s]) / SAMPLE_RATE, flops[s], encoder_ms, pipeline_ms,
                            flops[s] / encoder_ms / 1e6)
               for s, (encoder_ms, pipeline_ms) in timings.items() if s in lengths]
    encoder_ms, pipeline_ms = timings[REFERENCE_SECONDS]
    gflops = flops[REFERENCE_SECONDS] / encoder_ms / 1e6
    kernels, builtins_ms = top_kernels(profile) if profile else ([], None)
    rescoring = measurement.rescoring_profile
    rescoring_kernels, rescoring_builtins_ms = (top_kernels(rescoring) if rescoring
                                                else ([], None))
    return RowResult(
        spec.name, spec.runtime, spec.precision, spec.tuned, spec.note,
        artifact_bytes=spec.artifact_bytes, peak_rss_bytes=measurement.peak_rss_bytes,
        transcript=measurement.transcript, encoder_ms=encoder_ms, pipeline_ms=pipeline_ms,
        rescoring_ms=measurement.rescoring_ms,
        rtf=pipeline_ms / 1e3 / (len(waveforms[REFERENCE_SECONDS]) / SAMPLE_RATE),
        gflops=gflops, peak_fraction=gflops / peak.gflops if peak.gflops else None,
        scaling=scaling, top_kernels=kernels, vm_builtins_ms=builtins_ms,
        rescoring_top_kernels=rescoring_kernels, rescoring_vm_builtins_ms=rescoring_builtins_ms)


def add_peer_ratios(results: Sequence[RowResult]) -> str | None:
    """Fills each row's speedups over the fastest peer (non-TVM row); returns that peer's name."""
    peers = [r for r in results if r.runtime in PEER_RUNTIMES and r.skipped is None]
    if not peers:
        return None
    best_encoder = min(_measured(r.encoder_ms) for r in peers)
    best_pipeline = min(_measured(r.pipeline_ms) for r in peers)
    best_rescoring = min(_measured(r.rescoring_ms) for r in peers)
    for r in results:
        if r.skipped is None:
            r.encoder_speedup_vs_best_peer = best_encoder / _measured(r.encoder_ms)
            r.pipeline_speedup_vs_best_peer = best_pipeline / _measured(r.pipeline_ms)
            r.rescoring_speedup_vs_best_peer = best_rescoring / _measured(r.rescoring_ms)
    return min(peers, key=lambda r: _measured(r.encoder_ms)).name


def _measured(value: float | None) -> float:
    """A time or size of a row that was not skipped, which has them all."""
    assert value is not None, "a row that was not skipped has every measurement"
    return value


def progress_line(row: RowResult) -> str:
    if row.skipped:
        return f"{row.name}: skipped ({row.skipped})"
    return (f"{row.name}: encoder {row.encoder_ms:.1f} ms, pipeline {row.pipeline_ms:.1f} ms, "
            f"rescoring {row.rescoring_ms:.1f} ms, RTF {row.rtf:.4f}, {row.gflops:.1f} GFLOP/s, "
            f"peak RSS {_measured(row.peak_rss_bytes) / 2**20:.0f} MiB, "
            f"{row.artifact_bytes:,} bytes")
