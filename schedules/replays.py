"""Whether each tuned schedule, replayed on the model's symbolic function, beats the default
schedule there (TVM's, intermediates inlined): measured on this machine after tuning, at the
tuning sizes.

MetaSchedule measures a record on the static workload; compile replays it on the symbolic
function, whose tails are predicated and whose tile indices are divided at run time. Some
records that win at the static size lose there, by up to 100x (an abs-max reduction: 14 us
static, 1.7 ms replayed). The static checks in `apply_tuned_schedules` catch the known
patterns; this measures the rest. `tinyasr tune` writes the timings to REPLAY_FILE in the
database directory, keyed by the workload's structural hash; compile keeps TVM's default
schedule for a function whose tuned replay was not faster (`database.slower_than_default`).
Boards tuned over RPC get no timings (the static checks alone apply there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from tinyasr.compile.passes.apply_tuned_schedules import replay_on_symbolic
from tinyasr.compile.passes.inline_intermediates import inline_intermediates
from tinyasr.compile.schedule_database import (
    REPLAY_FILE,
    static_workload,
    structural_key,
    tuning_extent,
)
from tinyasr.model.common.atomic import atomic_write_text
from tinyasr.model.common.errors import warn


def _arguments(func: tvm.tirx.PrimFunc, workload: tvm.IRModule, rng: np.random.Generator
               ) -> list[Any]:
    """Inputs for one call of `func` at the sizes of its static `workload`: each shape
    variable its tuning extent, random floats, zero integers (always valid indices)."""
    buffers = iter(workload["main"].params)   # func's buffers, in order, with static shapes
    arguments: list[Any] = []
    for param in func.params:  # pyright: ignore[reportAttributeAccessIssue]  # reflected from C++
        if isinstance(param.ty, tvm.ir.PrimType):
            arguments.append(tuning_extent(param.name))
            continue
        buffer = next(buffers)
        shape = [int(dim) for dim in buffer.shape]
        values = rng.standard_normal(shape) if "float" in buffer.dtype else np.zeros(shape)
        arguments.append(tvm.runtime.tensor(values.astype(buffer.dtype)))
    return arguments


def time_on_host(func: tvm.tirx.PrimFunc, workload: tvm.IRModule, target: Target) -> float:
    """Median microseconds of one call of `func`, compiled for `target`, on this machine, at
    the sizes of its static `workload`."""
    module = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                         target=target)
    timer = module.jit().time_evaluator("main", tvm.cpu(), number=10, repeat=3,
                                        min_repeat_ms=20)
    return float(timer(*_arguments(func, workload, np.random.default_rng(0))).median) * 1e6


def _earlier_timings(path: Path) -> dict[str, dict[str, Any]]:
    """REPLAY_FILE's timings; none (with a warning: they are measured again) if unreadable."""
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        warn(f"{path}: unreadable: timing every tuned function again")
        return {}


def measure_replays(mod: tvm.IRModule, database: ms.database.Database, target: Target,
                    work_dir: Path, progress: Callable[[str], None] = print
                    ) -> dict[str, dict[str, Any]]:
    """Times every function of `mod` that has a tuned record, default against tuned replay,
    and merges the timings into REPLAY_FILE (written atomically). A timing stands while both
    functions it compared and the target they were compiled for are unchanged (their
    structural hashes): a new best record or a compiler change re-times that function alone,
    new code generation options (boards.FAST_MATH) re-time them all."""
    path = work_dir / REPLAY_FILE
    timings = _earlier_timings(path)
    target_key = structural_key(target)
    for gvar, func in mod.functions.items():  # pyright: ignore[reportAttributeAccessIssue]  # reflected
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        workload = static_workload(func)
        if workload is None:
            continue
        record = database.query_tuning_record(workload, target, gvar.name_hint)
        if record is None:
            continue
        try:
            tuned = replay_on_symbolic(record.trace, func, record.workload.mod["main"])
        except Exception:   # noqa: BLE001 - a replay that fails is compile's to refuse
            continue
        default = inline_intermediates(func)
        key = structural_key(workload)
        compared = {"tuned": structural_key(tuned), "default": structural_key(default),
                    "target": target_key}
        if timings.get(key, {}).get("compared") == compared:
            continue
        try:
            tuned_us = time_on_host(tuned, workload, target)
        except Exception:   # noqa: BLE001 - a replay that does not build is compile's to refuse
            continue
        default_us = time_on_host(default, workload, target)
        timings[key] = {"function": gvar.name_hint,
                        "default_us": round(default_us, 2), "tuned_us": round(tuned_us, 2),
                        "compared": compared}
        progress(f"  {gvar.name_hint}: symbolic replay {tuned_us:.1f} us, "
                 f"default {default_us:.1f} us")
    atomic_write_text(path, json.dumps(timings, indent=1, sort_keys=True) + "\n")
    return timings

