"""The search over the hand-written kernels' parameters (compile/kernels/tunable.py): each
tunable kernel of the model built at points of its space and timed on the device (this
machine, or a board behind a tracker: the builders and runners of MetaSchedule's trials),
every timing appended to the database's KERNEL_FILE. compile then builds each kernel with its
fastest recorded parameters.

A kernel is timed on random inputs at the size it mostly runs at: one utterance (attention's
batch and key-value groups 1), its symbolic rows and key columns a 5 s utterance's encoder
frames (TUNING_EXTENTS). The default parameters are timed
first, then the others, the most accumulators first, so that a small `trials` budget tries
the likely winners. Re-running continues: recorded points count against `trials` and are not
timed again. Each point is also run once on fixed inputs beside the default parameters, and
recorded as an error, never with a time, if it computes something else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import tirx
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.utils import remove_build_dir
from tvm.target import Target

from tinyasr.compile.kernels.tunable import Params, Tunable
from tinyasr.compile.schedule_database import (
    TUNING_EXTENTS,
    KernelRecord,
    append_kernel_records,
    read_kernel_records,
    static_workload,
)
from tinyasr.schedules.measure import Measurement, last_line

KERNEL_ROWS = TUNING_EXTENTS["frames"]   # a kernel's symbolic sizes while timing it, but
KERNEL_SIZES = {"batch": 1, "groups": 1}  # these (attention's), by the kernel's variable name


@dataclass
class KernelResult:
    name: str
    trials: int                  # points of its space recorded
    best_us: float | None        # the fastest recorded, None if none ran
    default_us: float | None     # the default parameters' time
    best: Params | None          # the fastest parameters


def kernel_workload(tunable: Tunable, params: Params) -> tvm.IRModule:
    """The kernel made with `params`, its symbolic sizes bound to KERNEL_SIZES or
    KERNEL_ROWS."""
    workload = static_workload(tunable.make(params),
                               lambda name: KERNEL_SIZES.get(name, KERNEL_ROWS))
    if workload is None:
        raise ValueError(f"{tunable.name}: a shape stays symbolic")
    return workload


def time_points(tunable: Tunable, points: list[Params], target: Target,
                measurement: Measurement) -> list[KernelRecord]:
    """Each point of `tunable` built, timed with `measurement` and run once to check that it
    computes what the default parameters compute (check_points); a point that fails to build,
    run or compute the same is recorded with its error and no time."""
    checked = [tunable.default, *(params for params in points if params != tunable.default)]
    workloads = [kernel_workload(tunable, params) for params in checked]
    built = measurement.builder.build([ms.builder.BuilderInput(mod, target) for mod in workloads])
    errors: dict[int, str] = {}
    libraries: dict[int, str] = {}
    for index, result in enumerate(built):
        if result.error_msg is None and result.artifact_path is not None:
            libraries[index] = result.artifact_path
        else:
            errors[index] = last_line(result.error_msg or "no library")
    timed = [index for index in range(len(checked)) if index in libraries
             and checked[index] in points]
    futures = measurement.runner.run([ms.runner.RunnerInput(
        libraries[index], "cpu", ms.arg_info.ArgInfo.from_prim_func(workloads[index]["main"]))
        for index in timed])
    times: dict[int, float] = {}
    for index, future in zip(timed, futures, strict=True):
        result = future.result()
        seconds = [float(s) for s in result.run_secs or []]
        if result.error_msg is not None or not seconds:
            errors[index] = last_line(result.error_msg or "no run time")
        else:
            times[index] = 1e6 * sum(seconds) / len(seconds)
    try:   # the default (built) and the points that timed
        errors = {**check_points(workloads[0]["main"], {
            index: library for index, library in libraries.items()
            if index == 0 or index in times}, measurement), **errors}
    finally:
        for library in libraries.values():
            remove_build_dir(library)
    return [KernelRecord(tunable.name, params, None, errors[index]) if index in errors
            else KernelRecord(tunable.name, params, times[index])
            for params, index in ((params, checked.index(params)) for params in points)]


def check_points(function: tirx.PrimFunc, libraries: dict[int, str],
                 measurement: Measurement) -> dict[int, str]:
    """The error of each built point (index into `libraries`; 0: the default parameters) whose
    arguments after one run on the device differ from the default's on the same inputs
    (check_inputs). A template's points differ in how they compute, never in what, so a
    difference is a wrong kernel (or a miscompiled one); timing alone would choose it if it
    were fast. If the default did not build or run, every other point is an error: unchecked,
    it must not replace the default."""
    others = sorted(index for index in libraries if index != 0)
    if 0 not in libraries:
        return {index: "not checked: the default parameters did not build" for index in others}
    outputs = measurement.run_once([libraries[index] for index in [0, *others]],
                                   check_inputs(function))
    reference = outputs[0]
    if isinstance(reference, str):
        return {index: f"not checked: the default parameters did not run ({reference})"
                for index in others}
    errors = {}
    for index, result in zip(others, outputs[1:], strict=True):
        error = result if isinstance(result, str) else compare_outputs(reference, result)
        if error is not None:
            errors[index] = error
    return errors


# How far a point's results may be from the default's: the points of a template reorder float
# work (register tiles, blocking, vector reductions), which moves a result by rounding only,
# relative to the largest magnitude of its argument; a wrong kernel is off by that magnitude.
CHECK_TOLERANCE = 1e-4


def check_inputs(function: tirx.PrimFunc, seed: int = 0) -> list[np.ndarray]:
    """One array per parameter of `function` (its static shape): floats uniform in [-1, 1],
    int8 in the symmetric range the quantizer writes ([-127, 127]), booleans true with
    probability 0.9 (an attention mask keeps most keys); the same arrays for every point of a
    template."""
    rng = np.random.default_rng(seed)
    arrays = []
    for buffer in function.params:  # pyright: ignore[reportAttributeAccessIssue]  # reflected
        shape, dtype = tuple(int(d) for d in buffer.shape), str(buffer.dtype)
        if dtype.startswith("float"):
            arrays.append(rng.uniform(-1, 1, shape).astype(dtype))
        elif dtype == "int8":
            arrays.append(rng.integers(-127, 128, shape, dtype=np.int8))
        elif dtype == "bool":
            arrays.append(rng.random(shape) < 0.9)
        else:
            raise ValueError(f"no check inputs for parameter {buffer.name} ({dtype})")
    return arrays


def compare_outputs(reference: list[np.ndarray], result: list[np.ndarray]) -> str | None:
    """None if every argument of `result` is within CHECK_TOLERANCE of the same one of
    `reference` (NaNs where it has NaNs), else what differs."""
    for number, (expected, actual) in enumerate(zip(reference, result, strict=True)):
        expected_nan, actual_nan = np.isnan(expected), np.isnan(actual)
        if expected_nan.any() or actual_nan.any():
            if not np.array_equal(expected_nan, actual_nan):
                return f"other results than the default parameters: NaNs in argument {number}"
            expected, actual = expected[~expected_nan], actual[~actual_nan]
        expected, actual = expected.astype(np.float64), actual.astype(np.float64)
        difference = float(np.abs(expected - actual).max(initial=0.0))
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        if difference > CHECK_TOLERANCE * scale:
            return (f"other results than the default parameters: argument {number} off by "
                    f"{difference:.3g} (largest magnitude {scale:.3g})")
    return None


def kernel_result(tunable: Tunable, records: list[KernelRecord]) -> KernelResult:
    mine = [r for r in records if r.kernel == tunable.name and r.params in tunable.space]
    timed = [r for r in mine if r.us is not None]
    best = min(timed, key=lambda r: math.inf if r.us is None else r.us, default=None)
    default = next((r.us for r in timed if r.params == tunable.default), None)
    return KernelResult(tunable.name, len(mine), None if best is None else best.us, default,
                        None if best is None else best.params)


def search_kernels(tunables: list[Tunable], work_dir: Path, target: Target, trials: int,
                   measurement: Measurement, report: Callable[[str], None]
                   ) -> list[KernelResult]:
    """Times up to `trials` points of each kernel's space (those recorded included), appending
    the timings to the database in `work_dir` kernel by kernel; `report` gets a line per
    kernel."""
    records = read_kernel_records(work_dir)
    results = []
    for number, tunable in enumerate(tunables, 1):
        recorded = [r.params for r in records if r.kernel == tunable.name]
        todo = [p for p in tunable.space if p not in recorded][:max(0, trials - len(recorded))]
        if todo:
            report(f"[kernel {number}/{len(tunables)}] {tunable.name}: timing {len(todo)} of "
                   f"{len(tunable.space)} parameter choices")
            timed = time_points(tunable, todo, target, measurement)
            append_kernel_records(work_dir, timed)
            records += timed
        result = kernel_result(tunable, records)
        results.append(result)
        report(f"  {describe(result)}")
    return results


def describe(result: KernelResult) -> str:
    if result.best_us is None:
        return f"{result.name}: nothing ran ({result.trials} recorded)"
    against = "" if result.default_us is None else (
        f", default {result.default_us:.1f} us ({result.default_us / result.best_us:.2f}x)")
    return f"{result.name}: best {result.best_us:.1f} us {result.best}{against}"
