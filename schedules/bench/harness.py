"""Measuring one row in one freshly spawned process (`run_in_child(measure_row, ...)`): its
median encoder, pipeline and rescoring times, the reference transcript, the process's peak
RSS, and for TVM rows the profiles of the encode and of the rescoring, taken after the timed
runs."""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tinyasr.model.decoding.options import DecodeOptions, decode
from tinyasr.model.decoding.search import Hypothesis
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.schedules.bench.engines import Engine, TvmEngine, load_engine
from tinyasr.schedules.bench.rows import RowSpec
from tinyasr.schedules.bench.workload import REFERENCE_SECONDS

if TYPE_CHECKING:   # the runner imports TVM, which only TVM rows' processes load
    from tinyasr.targets.host.runner import KernelTime

PROFILE_RUNS = 3                   # instrumented encodes of the reference utterance per TVM row


def time_runs(engine: Engine, waveform: np.ndarray, options: DecodeOptions,
              repeats: int) -> tuple[float, float, Hypothesis]:
    """Median encoder and pipeline milliseconds over `repeats` runs after a warm-up run, and
    the decoded tokens."""
    encoder_seconds, pipeline_seconds = [], []
    tokens: Hypothesis = ()
    for _ in range(repeats + 1):
        started = time.perf_counter()
        log_probs, encoded = engine.encode(waveform)
        encoded_at = time.perf_counter()
        tokens = decode(log_probs, options, partial(engine.score, encoded))
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
    rescoring_profile: list[KernelTime]         # TVM rows: that rescoring's; else empty


def measure_row(spec: RowSpec, waveforms: dict[float, np.ndarray], tokenizer: Tokenizer,
                options: DecodeOptions, repeats: int, threads: int,
                nbest: Sequence[Hypothesis]) -> Measurement:
    """In a fresh process: the row's timings per length, the reference utterance's transcript,
    this process's peak RSS, the rescoring time of `nbest` (the same hypotheses for
    every row: how much the n-best shares decides the decoder's work), and for TVM rows the
    profiles of the reference utterance's encode and of that rescoring, taken after the timed
    runs so they cannot slow them."""
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
    profile, rescoring_profile = [], []
    if isinstance(engine, TvmEngine):
        reference = waveforms[REFERENCE_SECONDS]
        profile = engine.runner.profile_encode(reference, PROFILE_RUNS)
        rescoring_profile = engine.runner.profile_rescoring(engine.encode(reference)[1], nbest,
                                                            PROFILE_RUNS)
    return Measurement(timings, transcript, peak_rss_bytes(), profile, rescoring_ms,
                       rescoring_profile)


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over from
    the forking parent across exec, so a spawned child would report the parent's peak."""
    status = Path("/proc/self/status").read_text()
    peak = re.search(r"^VmHWM:\s*(\d+) kB", status, re.M)
    if peak is None:
        raise RuntimeError("/proc/self/status has no VmHWM line")
    return int(peak.group(1)) * 1024


def run_in_child(function: Callable, *args: Any) -> Any:
    """`function(*args)` in a freshly spawned process (its own peak RSS, no state shared)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()
