"""Per-device tuning: the hand-written kernels' parameters searched (kernel_search.py), then
MetaSchedule with the XGBoost cost model over the compiled model's other tasks.

Tasks are the TIR functions of the module that `compile/pipeline.py` builds, taken after its
legalize phase (before lowering and codegen), so they are exactly what the board runs, each as
its static workload (`tinyasr.compile.schedule_database.static_workload`), the key compile looks
records up by.

Records go to the device's JSONDatabase, which appends one JSON line per record: a kill -9
loses at most a torn last line, which `open_database` drops before the database is reused.
Re-running continues: the trials already recorded for a task count against its budget, and the
search starts from its best records.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm
import tvm_ffi
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.load_time_tables import without_table_functions
from tinyasr.compile.pipeline import ImportedModel, IRDumper, legalize
from tinyasr.compile.schedule_database import open_database, static_workload, workload_flops
from tinyasr.model.common.atomic import scratch_directory, temp_files_in
from tinyasr.model.common.errors import InputError
from tinyasr.model.common.progress import progress
from tinyasr.schedules.kernel_search import search_kernels
from tinyasr.schedules.measure import Measurement, local_measurement
from tinyasr.schedules.replays import measure_replays

NO_RESULT = 1e10              # MetaSchedule's run time for a failed build or run


@dataclass
class TaskResult:
    name: str
    trials: int                # records in the database for this task
    best_us: float | None      # best measured latency, None if nothing ran


def tuning_target(target: dict[str, Any]) -> Target:
    """The LLVM target with `num-cores`, which MetaSchedule requires (the host's lacks it)."""
    return Target({"num-cores": os.cpu_count() or 1, **target})


def static_task(task: ms.ExtractedTask) -> ms.ExtractedTask | None:
    """The task as its static workload; None when a shape stays symbolic."""
    mod = static_workload(task.dispatched[0]["main"])
    return None if mod is None else _on_workload(task, mod)


def _on_workload(task: ms.ExtractedTask, mod: tvm.IRModule) -> ms.ExtractedTask:
    """`task` with `mod` as its one workload."""
    return ms.ExtractedTask(task.task_name, mod,
                            task.target,  # pyright: ignore[reportAttributeAccessIssue]  # reflected
                            [mod], task.weight)


def on_stored_workload(database: ms.database.Database,
                       task: ms.ExtractedTask) -> ms.ExtractedTask:
    """The task on the database's own copy of its workload, when it has one. MetaSchedule files
    a record under the stored workload structurally equal to the task's, and loading the
    database replays each record's trace on that workload: a trace must name its blocks. (Tuned
    on an equal function under other buffer names, after a graph change, a layer norm's records
    made the whole database unreadable.)"""
    if not database.has_workload(task.mod):
        return task
    return _on_workload(task, database.commit_workload(task.mod).mod)


def extract_tasks(imported: ImportedModel, target: Target, ops: list[str] | None
                  ) -> list[ms.ExtractedTask]:
    """The model's tuning tasks for `target` (only those whose name contains one of `ops`,
    when given) that specialize to static shapes, heaviest first."""
    return tasks_of(legalize(imported, target, IRDumper(None))[0], target, ops)


def tasks_of(mod: tvm.IRModule, target: Target, ops: list[str] | None
             ) -> list[ms.ExtractedTask]:
    """extract_tasks on the legalized module, its table functions left out."""
    tasks = [static_task(task) for task in ms.relax_integration.extract_tasks(
                 without_table_functions(mod), target)
             if not ops or any(op in task.task_name for op in ops)]
    return sorted((task for task in tasks if task is not None), key=task_flops, reverse=True)


def task_flops(task: ms.ExtractedTask) -> float:
    """FLOPs of the task per model call (its calls counted): tasks are tuned heaviest first,
    so that a --time-budget is spent where the time goes and reshapes come last. The
    hand-written vector kernels (int8, BSR), which TVM cannot count and which are not tunable
    anyway, count 0."""
    return task.weight * (workload_flops(task.mod) or 0.0)


def task_result(database: ms.database.Database, task: ms.ExtractedTask) -> TaskResult:
    """How many trials the database holds for `task` (failed ones too) and the best latency
    among them."""
    records = [record for record in database.get_all_tuning_records()
               if tvm_ffi.structural_equal(record.workload.mod, task.mod)]
    seconds = [sum(float(s) for s in r.run_secs) / len(r.run_secs) for r in records
               if r.run_secs]
    best = min((s for s in seconds if s < NO_RESULT), default=None)
    return TaskResult(task.task_name, len(records), None if best is None else best * 1e6)


@derived_object
class ProgressCallback(ms.measure_callback.PyMeasureCallback):
    """Prints the task, trials done and best latency after each measured batch."""

    def __init__(self, result: TaskResult, total: int):
        self.result, self.total = result, total

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results) -> None:
        for run in runner_results:
            self.result.trials += 1
            if run.error_msg is None and run.run_secs:
                latency = 1e6 * sum(float(s) for s in run.run_secs) / len(run.run_secs)
                if self.result.best_us is None or latency < self.result.best_us:
                    self.result.best_us = latency
        progress(f"  {_status(self.result)} / {self.total} trials")


def _status(result: TaskResult) -> str:
    best = "-" if result.best_us is None else f"{result.best_us:.1f} us"
    return f"{result.name}: best {best}, {result.trials}"


def _drop_unnamed_log_handlers() -> None:
    """MetaSchedule's logger set-up refers to its logger's handlers by name and crashes on an
    unnamed one (seen under pytest's log capture after an RPC tuning session); drop those."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in [h for h in logger.handlers if h.get_name() is None]:
        logger.removeHandler(handler)


def tune(imported: ImportedModel, device: str, target: dict[str, Any], work_dir: Path,
         trials: int, ops: list[str] | None = None, time_budget_min: float | None = None,
         measurement: Measurement | None = None) -> list[TaskResult]:
    """Tunes each task of the model for `device` (its LLVM `target`) up to `trials` recorded
    trials (earlier runs' records count), measuring with `measurement` (default: on this
    machine): first the hand-written kernels' parameters (tinyasr.schedules.kernel_search),
    then MetaSchedule's tasks, heaviest first; stops starting tasks after the time budget. A
    trial that fails (a board gone, a tracker down) is recorded as failed and tuning goes on.
    Measuring on this machine, it then times each tuned function's replay on its symbolic
    shapes against the default schedule (tinyasr.schedules.replays)."""
    on_host = measurement is None
    measurement = measurement or local_measurement()
    database = open_database(Path(work_dir), device, target)
    llvm = tuning_target(target)
    choices = KernelChoices()   # records the kernel templates legalize makes
    mod = legalize(imported, llvm, IRDumper(None), choices)[0]
    kernels = [tunable for name, tunable in sorted(choices.made.items())
               if not ops or any(op in name for op in ops)]
    tasks = [task for task in tasks_of(mod, llvm, ops) if task.task_name not in choices.made]
    if not tasks and not kernels:
        raise InputError(f"--ops {' '.join(ops or [])}: matches none of the model's "
                         "tunable tasks")
    started, results, untunable = time.monotonic(), [], []
    # MetaSchedule's logs, and every temp file of its builders and runners (candidate
    # libraries, build workspaces), go to one scratch dir: deleted at exit, and a killed
    # run's by the next
    scratch = scratch_directory("tinyasr-tune-logs-")
    logs = str(scratch)
    with temp_files_in(scratch):
        results += [TaskResult(kernel.name, kernel.trials, kernel.best_us) for kernel in
                    search_kernels(kernels, Path(work_dir), llvm, trials, measurement,
                                   progress)]
        for number, task in enumerate(tasks, 1):
            task = on_stored_workload(database, task)
            result = task_result(database, task)
            results.append(result)
            over_budget = (time_budget_min is not None
                           and time.monotonic() - started > 60 * time_budget_min)
            if result.trials >= trials or over_budget:
                progress(f"[{number}/{len(tasks)}] {_status(result)} trials"
                         f"{' (time budget spent)' if over_budget else ''}")
                continue
            progress(f"[{number}/{len(tasks)}] {task.task_name}: tuning {trials - result.trials} "
                     "trials")
            try:
                _drop_unnamed_log_handlers()
                contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                    [task], work_dir=logs)
                # ProgressCallback, a derived_object, is a MeasureCallback only at run time
                ms.tune.tune_tasks(
                    tasks=contexts, task_weights=weights, work_dir=logs,
                    max_trials_global=trials - result.trials,
                    num_trials_per_iter=min(64, trials - result.trials),
                    builder=measurement.builder, runner=measurement.runner,
                    database=database, cost_model="xgb",
                    measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                       ProgressCallback(result, trials)])  # pyright: ignore[reportArgumentType]
            except (RuntimeError, ValueError) as error:   # TVM errors: e.g. a hand-written kernel
                progress(f"  {task.task_name}: not tunable, keeps its own schedule "
                         f"({str(error).splitlines()[-1]})")
                untunable.append(task.task_name)
            results[-1] = task_result(database, task)
        if not kernels and len(untunable) == len(tasks):
            raise InputError(f"{'--ops ' + ' '.join(ops) if ops else 'the model'}: none of its "
                             f"{len(tasks)} tasks is tunable (hand-written kernels keep their own "
                             "schedules); nothing was tuned")
        if on_host:
            progress("timing the tuned schedules on symbolic shapes against the defaults")
            measure_replays(mod, database, llvm, Path(work_dir), progress)
    return results
