"""TIR functions get their tuned schedules from a MetaSchedule database.

Records were measured on static workloads (`tinyasr.schedules.database.static_workload`: every
shape variable bound to its TUNING_EXTENTS size), while the model's functions keep symbolic
frames and n-best sizes. TVM's own MetaScheduleApplyDatabase therefore matches nothing here, so this pass
looks each function up by its static workload and replays the record's trace on the symbolic
function. The trace replays unchanged except where it tiles a symbolic loop: MetaSchedule's tile
sampler cannot tile a loop of unknown extent (it would return [-1, 1, ...] and drop the tuned
tiles), so such a split takes the tuned inner factors and an inferred outer one, and the tail
iterations are predicated off. Splits of static loops keep their decisions.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.schedule import Schedule, Trace

from tinyasr.schedules.database import static_workload

SCHEDULED = "tirx.is_scheduled"


def _symbolic_tile_splits(instructions: list, decisions: list,
                          probe: Schedule) -> list:
    """The trace's instructions with each split of a symbolic loop given literal factors: the
    tuned ones, the outermost inferred. Loops are traced back to GetLoops of a named block."""
    decision_of = {int(index): decision for index, decision in decisions}
    block_of: dict[str, str] = {}
    loop_of: dict[str, tuple[str, int]] = {}
    factor_of: dict[str, Any] = {}
    rewritten = []
    for index, (kind, inputs, attrs, outputs) in enumerate(instructions):
        if kind == "GetSBlock":
            block_of[outputs[0]] = attrs[0]
        elif kind == "GetLoops" and inputs[0] in block_of:
            loop_of.update({loop: (block_of[inputs[0]], position)
                            for position, loop in enumerate(outputs)})
        elif (kind == "SamplePerfectTile" and inputs[0] in loop_of
              and _is_symbolic(probe, *loop_of[inputs[0]])):
            tiles = [int(factor) for factor in decision_of[index]]
            factor_of.update({factor: "None" if position == 0 else tiles[position]
                              for position, factor in enumerate(outputs)})
        elif kind == "Split":
            inputs = [inputs[0], *(factor_of.get(factor, factor) for factor in inputs[1:])]
        rewritten.append([kind, inputs, attrs, outputs])
    return rewritten


def _is_symbolic(probe: Schedule, block: str, position: int) -> bool:
    loop = probe.get(probe.get_loops(probe.get_sblock(block))[position])
    return not isinstance(loop.extent, tvm.tirx.IntImm)


def replay_on_symbolic(trace: Trace, func: tvm.tirx.PrimFunc) -> tvm.tirx.PrimFunc:
    """`func` scheduled by a trace tuned on its static workload."""
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    instructions, decisions = trace.as_json()
    schedule = Schedule(mod)
    Trace.apply_json_to_schedule(
        [_symbolic_tile_splits(instructions, decisions, Schedule(mod)), decisions], schedule)
    scheduled = schedule.mod["main"].without_attr("global_symbol")
    return scheduled.with_attrs(func.attrs).with_attr(SCHEDULED, True)


@tvm.transform.module_pass(opt_level=0, name="ApplyTunedSchedules")
class ApplyTunedSchedules:
    """Schedules every TIR function the database has a record for; `applied` and `failed`
    name them afterwards (a record whose trace does not replay leaves its function untuned)."""

    def __init__(self, database: ms.database.Database, target: tvm.target.Target):
        self.database, self.target = database, target
        self.applied: list[str] = []
        self.failed: list[str] = []

    def transform_module(self, mod: tvm.IRModule, _context) -> tvm.IRModule:
        updates = {}
        for gvar, func in mod.functions.items():
            if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get(SCHEDULED):
                continue
            workload = static_workload(func)
            record = None if workload is None else self.database.query_tuning_record(
                workload, self.target, gvar.name_hint)
            if record is None:
                continue
            try:
                updates[gvar] = replay_on_symbolic(record.trace, func)
                self.applied.append(gvar.name_hint)
            except Exception:   # noqa: BLE001 - TVM raises many error types for a bad replay
                self.failed.append(gvar.name_hint)
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod
