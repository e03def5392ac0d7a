"""The whole bench: every row prepared in the parent, then measured round after round (each
row once per round, in a fresh process), gathered into one report."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyasr.model.common.atomic import scratch_prefix, temp_files_in
from tinyasr.model.common.errors import InputError
from tinyasr.model.decoding.options import DecodeOptions
from tinyasr.model.decoding.prefix_tree import prefix_tree
from tinyasr.model.decoding.search import Hypothesis
from tinyasr.model.network.compressed import read_compressed
from tinyasr.model.network.framing import SAMPLE_RATE
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.schedules.bench.cpu import core_peak, cpu_name
from tinyasr.schedules.bench.harness import Measurement, measure_row, run_in_child
from tinyasr.schedules.bench.report import write_outputs
from tinyasr.schedules.bench.results import add_peer_ratios, progress_line, row_result
from tinyasr.schedules.bench.rows import RowSpec, prepare_rows
from tinyasr.schedules.bench.workload import (
    REFERENCE_SECONDS,
    bench_waveforms,
    encoder_flops,
    reference_nbest,
)


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
    the rounds, its transcript and profiles (last round) and its highest peak RSS."""
    rounds: list[list[Measurement]] = [[] for _ in specs]
    for number in range(1, settings.rounds + 1):
        for spec, measured in zip(specs, rounds, strict=True):
            measured.append(run_in_child(measure_row, spec, waveforms, tokenizer,
                                         settings.options, settings.repeats, settings.threads,
                                         nbest))
            encoder_ms, pipeline_ms = measured[-1].timings[REFERENCE_SECONDS]
            progress(f"  round {number}/{settings.rounds} {spec.name}: encoder {encoder_ms:.1f} "
                     f"ms, pipeline {pipeline_ms:.1f} ms, rescoring "
                     f"{measured[-1].rescoring_ms:.1f} ms")
    merged = []
    for measured in rounds:
        timings = {seconds: (statistics.median(m.timings[seconds][0] for m in measured),
                             statistics.median(m.timings[seconds][1] for m in measured))
                   for seconds in measured[0].timings}
        last = measured[-1]
        merged.append(Measurement(timings, last.transcript,
                                  max(m.peak_rss_bytes for m in measured), last.profile,
                                  statistics.median(m.rescoring_ms for m in measured),
                                  last.rescoring_profile))
    return merged


def run_bench(settings: BenchSettings, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Prepares and measures every row (printing each as it finishes); returns the report."""
    model, tokenizer = load_model_dir(settings.fp32_model)
    measured = sorted({*settings.lengths, REFERENCE_SECONDS})
    waveforms = bench_waveforms(measured)
    flops = {seconds: encoder_flops(model, waveform) for seconds, waveform in waveforms.items()}
    nbest = reference_nbest(model, waveforms[REFERENCE_SECONDS], settings.options.beam)
    peak = core_peak()
    progress(f"core peak: {peak.formula()}")
    # every artifact, and every temp file of the exporters, compilers and measuring processes,
    # in one scratch dir: deleted at the end, and a killed bench's by the next bench
    with (tempfile.TemporaryDirectory(prefix=scratch_prefix("tinyasr-bench-")) as work,
          temp_files_in(Path(work))):
        rows = prepare_rows(model, settings.fp32_model, settings.int8_model,
                            settings.sparse_model, Path(work), progress)
        specs = [row for row in rows if isinstance(row, RowSpec)]
        measured = dict(zip((spec.name for spec in specs),
                            measure_rounds(specs, waveforms, settings, tokenizer, nbest,
                                           progress), strict=True))
    results = [row_result(row, measured[row.name], waveforms, flops, settings.lengths, peak)
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


def write_bench(settings: BenchSettings, out: Path,
                progress: Callable[[str], None] = print) -> None:
    """`tinyasr bench`: checks the models and `out` first (bad input fails here, before minutes
    of work), runs the bench and writes bench.json, bench.md and bench.png into `out`."""
    load_model_dir(settings.fp32_model)
    for model in (settings.int8_model, settings.sparse_model):
        if model is not None:
            read_compressed(model)
    if out.is_file():
        raise InputError(f"{out}: is a file, --out must be a directory")
    write_outputs(run_bench(settings, progress), out)
