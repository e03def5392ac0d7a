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
timed again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tvm
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
from tinyasr.schedules.measure import Measurement

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
    """Each point of `tunable` built and timed with `measurement`; a point that fails to build
    or run is recorded with its error and no time."""
    builder, runner = measurement
    workloads = [kernel_workload(tunable, params) for params in points]
    built = builder.build([ms.builder.BuilderInput(mod, target) for mod in workloads])
    records: list[KernelRecord] = []
    runs: list[tuple[Params, tvm.IRModule, str]] = []   # built: params, workload, library
    for params, workload, result in zip(points, workloads, built, strict=True):
        if result.error_msg is None and result.artifact_path is not None:
            runs.append((params, workload, result.artifact_path))
        else:
            records.append(KernelRecord(tunable.name, params, None,
                                        _last_line(result.error_msg or "no library")))
    futures = runner.run([ms.runner.RunnerInput(
        library, "cpu", ms.arg_info.ArgInfo.from_prim_func(workload["main"]))
        for _, workload, library in runs])
    for (params, _, library), future in zip(runs, futures, strict=True):
        timed = future.result()
        remove_build_dir(library)
        seconds = [float(s) for s in timed.run_secs or []]
        if timed.error_msg is not None or not seconds:
            records.append(KernelRecord(tunable.name, params, None,
                                        _last_line(timed.error_msg or "no run time")))
        else:
            records.append(KernelRecord(tunable.name, params, 1e6 * sum(seconds) / len(seconds)))
    return records


def _last_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[-1] if lines else message


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
