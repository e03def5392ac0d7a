"""TIR functions get their tuned schedules from a MetaSchedule database.

Records were measured on static workloads (`tinyasr.compile.schedule_database.static_workload`:
every shape variable bound to its TUNING_EXTENTS size), while the model's functions keep symbolic
frames and n-best sizes. TVM's own MetaScheduleApplyDatabase therefore matches nothing here, so
this pass looks each function up by its static workload and replays the record's trace on the
symbolic function. The trace replays unchanged except in two places:
- where it tiles a symbolic loop: MetaSchedule's tile sampler cannot tile a loop of unknown
  extent (it would return [-1, 1, ...] and drop the tuned tiles), so such a split takes the
  tuned inner factors and an inferred outer one, and the tail iterations are predicated off;
- where it vectorizes a loop that was static at the tuning size but is symbolic here (a whole
  `steps` axis): fixed-width vector ISAs cannot take it, so that Vectorize is left out and the
  loop stays serial.
Splits of static loops keep their decisions.

A schedule measured fast at the static size can be slow on symbolic shapes: a vectorized loop
whose lanes carry a tail predicate runs scalar, and compute-at over a symbolic region can
recompute a reduction per element (measured: the attention softmax 14x slower than untuned).
So the best record's replay is checked: no vector lane bounded by a symbolic size through a
division or in a reduction, no more work than the static workload (FLOPs at the tuning size).
A function whose replay fails the checks keeps TVM's default schedule and is reported (the
next-best records tried instead were measured worse than the default: they are the ones without
vector loops). Host tuning also times each replay against the default
(tinyasr.schedules.replays); one not faster is not used.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.schedule import Schedule, Trace
from tvm.sym.analyzer import Analyzer

from tinyasr.compile.passes.tile_padding import pad_symbolic_tiles
from tinyasr.compile.passes.traces import REDUCE, trace_origins
from tinyasr.compile.schedule_database import (
    TUNING_EXTENTS,
    static_workload,
    structural_key,
    workload_flops,
)

SCHEDULED = "tirx.is_scheduled"
EXTRA_WORK = 1.1    # a replay may do this much of the static workload's FLOPs, no more


def _symbolic_tile_splits(instructions: list, decisions: list,
                          probe: Schedule) -> list:
    """The trace's instructions with each split of a symbolic loop given literal factors: the
    tuned ones, the outermost inferred. Loops are traced back to GetLoops of a named block."""
    decision_of = {int(index): decision for index, decision in decisions}
    _, loop_of = trace_origins(instructions)
    factor_of: dict[str, Any] = {}
    rewritten = []
    for index, (kind, inputs, attrs, outputs) in enumerate(instructions):
        if (kind == "SamplePerfectTile" and inputs[0] in loop_of
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


def _children(stmt: Any) -> list:
    """The statements directly inside `stmt` (loop, block, branch and sequence bodies)."""
    nested = [getattr(stmt, field, None)
              for field in ("body", "block", "init", "then_case", "else_case")]
    return [child for child in [*nested, *getattr(stmt, "seq", ())] if child is not None]


def _symbolic_vector_loops(stmt: Any) -> int:
    """How many vectorized loops of non-constant extent `stmt` holds."""
    here = (isinstance(stmt, tvm.tirx.For) and stmt.kind == tvm.tirx.ForKind.VECTORIZED
            and not isinstance(stmt.extent, tvm.tirx.IntImm))
    return here + sum(_symbolic_vector_loops(child) for child in _children(stmt))


def _without(instructions: list, decisions: list, dropped: set[int]) -> tuple[list, list]:
    """The trace without the instructions at `dropped` (decisions re-indexed)."""
    kept = [index for index in range(len(instructions)) if index not in dropped]
    new_index = {old: new for new, old in enumerate(kept)}
    return ([instructions[index] for index in kept],
            [[new_index[int(index)], decision] for index, decision in decisions
             if int(index) in new_index])


def _apply(mod: tvm.IRModule, instructions: list, decisions: list) -> tvm.tirx.PrimFunc:
    schedule = Schedule(mod)
    Trace.apply_json_to_schedule([instructions, decisions], schedule)
    return schedule.mod["main"]


def _replay(mod: tvm.IRModule, instructions: list, decisions: list) -> tvm.tirx.PrimFunc:
    """The trace applied, leaving out each Vectorize that would vectorize a symbolic loop."""
    scheduled, dropped = _apply(mod, instructions, decisions), set()
    remaining = _symbolic_vector_loops(scheduled.body)
    for index, instruction in enumerate(instructions):
        if instruction[0] != "Vectorize" or not remaining:
            continue
        candidate = _apply(mod, *_without(instructions, decisions, dropped | {index}))
        if _symbolic_vector_loops(candidate.body) < remaining:
            scheduled, dropped = candidate, dropped | {index}
            remaining = _symbolic_vector_loops(scheduled.body)
    return scheduled


def _block_names(stmt: Any) -> list[str]:
    """Names of the blocks in `stmt`, in program order."""
    own = [stmt.name_hint] if hasattr(stmt, "iter_vars") and hasattr(stmt, "name_hint") else []
    return own + [name for child in _children(stmt) for name in _block_names(child)]


def _renamed_blocks(instructions: list, tuned_on: tvm.tirx.PrimFunc,
                    func: tvm.tirx.PrimFunc) -> list:
    """The trace's block names (GetSBlock) translated from the function it was tuned on to
    `func`: a database record serves every structurally equal function (six layers' abs-max
    reductions, say), but names blocks after the first one's buffers (`lv42_red`, not
    `lv73_red`). Blocks the trace made (`lv42_red_rf`) follow the block they came from."""
    renames = dict(zip(_block_names(tuned_on.body), _block_names(func.body), strict=True))

    def renamed(name: str) -> str:
        origin = max((old for old in renames if name.startswith(old)), key=len, default=None)
        return name if origin is None else renames[origin] + name[len(origin):]

    return [[kind, inputs, [renamed(str(attrs[0])), *attrs[1:]] if kind == "GetSBlock" else attrs,
             outputs] for kind, inputs, attrs, outputs in instructions]


def replay_on_symbolic(trace: Trace, func: tvm.tirx.PrimFunc,
                       tuned_on: tvm.tirx.PrimFunc | None = None) -> tvm.tirx.PrimFunc:
    """`func` scheduled by a trace tuned on its static workload (`tuned_on`, the record's own,
    whose block names the trace uses; default: `func`'s); on its symbolic loops padded to the
    tuned inner tiles (tile_padding.py) where the padded replay applies."""
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    instructions, decisions = trace.as_json()
    if tuned_on is not None:
        instructions = _renamed_blocks(instructions, tuned_on, func)
    instructions = _symbolic_tile_splits(instructions, decisions, Schedule(mod))
    scheduled = None
    padded = pad_symbolic_tiles(mod, instructions, decisions)
    if padded is not None:
        try:
            scheduled = _replay(*padded)
        except Exception:   # noqa: BLE001 - the padded structure does not take this trace
            scheduled = None
    if scheduled is None:
        scheduled = _replay(mod, instructions, decisions)
    # TVM declares with_attr(s) to return a BaseFunc, not the function's own class
    return (scheduled.without_attr("global_symbol").with_attrs(func.attrs)
            .with_attr(SCHEDULED, True))  # pyright: ignore[reportReturnType]


def _conjuncts(predicate: Any) -> list:
    if isinstance(predicate, tvm.tirx.And):
        return [*_conjuncts(predicate.a), *_conjuncts(predicate.b)]
    return [predicate]


def _divides_by_a_variable(expr: Any) -> bool:
    """Whether `expr` has a floor division or modulo by a non-constant."""
    if isinstance(expr, (tvm.tirx.FloorDiv, tvm.tirx.FloorMod)) and not isinstance(
            expr.b, tvm.tirx.IntImm):
        return True
    children = [getattr(expr, field, None) for field in ("a", "b", "value")]
    return any(_divides_by_a_variable(child) for child in children
               if child is not None and tvm.ir.is_prim_expr(child))


def _is_reduction(block: Any) -> bool:
    return any(int(iter_var.iter_type) == REDUCE for iter_var in block.iter_vars)


def _uniform_over_lanes(conjunct: Any, used: list, lanes: tuple, analyzer: Analyzer) -> bool:
    """Whether `conjunct` (index < bound) is the same for every lane of the vector loops in it:
    the index steps in whole vectors apart from the lane, and the bound is a whole number of
    vectors (a loop padded to its tile, tile_padding.py). `used`: the conjunct's variables."""
    if not isinstance(conjunct, tvm.tirx.LT):
        return False
    in_conjunct = [(var, extent) for var, extent in lanes if any(var.same_as(u) for u in used)]
    return bool(in_conjunct) and all(
        analyzer.can_prove(tvm.tirx.floormod(conjunct.b, extent) == 0)
        and analyzer.can_prove(tvm.tirx.floormod(conjunct.a - var, extent) == 0)
        for var, extent in in_conjunct)


def _costly_vector_tail(stmt: Any, sizes: list, lanes: tuple = (),
                        analyzer: Analyzer | None = None) -> bool:
    """Whether a block under a vectorized loop has a predicate bounding that loop's variable
    by a symbolic size (one of `sizes`), through a division or inside a reduction: the tail is
    only known at run time, so the lanes go scalar, per lane (measured 8x and 23x slower than
    untuned on the attention matmuls). A plain bound on an elementwise epilogue
    (i * 64 + lane < frames * 608) stays: LLVM handles it, measured as fast as the static size;
    so does a bound the same for all lanes."""
    analyzer = analyzer or Analyzer()
    if isinstance(stmt, tvm.tirx.For) and stmt.kind == tvm.tirx.ForKind.VECTORIZED:
        lanes = (*lanes, (stmt.loop_var, stmt.extent))
    predicate = getattr(stmt, "predicate", None)
    if lanes and predicate is not None:
        for conjunct in _conjuncts(predicate):
            used = tvm.tirx.analysis.undefined_vars(conjunct)
            if (any(var.same_as(lane) for var in used for lane, _ in lanes)
                    and any(var.same_as(size) for var in used for size in sizes)
                    and (_divides_by_a_variable(conjunct) or _is_reduction(stmt.block))
                    and not _uniform_over_lanes(conjunct, used, lanes, analyzer)):
                return True
    return any(_costly_vector_tail(child, sizes, lanes, analyzer) for child in _children(stmt))


def sound_on_symbolic(scheduled: tvm.tirx.PrimFunc, workload: tvm.IRModule) -> bool:
    """The checks of the module docstring: no costly vector tail, no extra work."""
    sizes = [var for var in tvm.tirx.analysis.undefined_vars(scheduled.body)
             if var.name in TUNING_EXTENTS]
    if _costly_vector_tail(scheduled.body, sizes):
        return False
    static = static_workload(scheduled)
    work = workload_flops(workload)
    tuned_work = None if static is None else workload_flops(static)
    return work is None or tuned_work is None or tuned_work <= EXTRA_WORK * work


@tvm.transform.module_pass(opt_level=0, name="ApplyTunedSchedules")
class ApplyTunedSchedules:
    """Schedules every TIR function the database has a record for; `applied` and `failed`
    name them afterwards (failed: the record does not replay, or not soundly, on the symbolic
    function, or its replay was timed slower than the default (`slower_than_default`, from
    tinyasr.schedules.replays); the function keeps TVM's default schedule)."""

    def __init__(self, database: ms.database.Database, target: tvm.target.Target,
                 slower_than_default: frozenset[str] = frozenset()):
        self.database, self.target = database, target
        self.slower_than_default = slower_than_default
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
            if structural_key(workload) in self.slower_than_default:
                self.failed.append(gvar.name_hint)
                continue
            try:
                scheduled = replay_on_symbolic(record.trace, func, record.workload.mod["main"])
            except Exception:   # noqa: BLE001 - TVM raises many error types for a bad replay
                scheduled = None
            if scheduled is None or not sound_on_symbolic(scheduled, workload):
                self.failed.append(gvar.name_hint)
            else:
                updates[gvar] = scheduled
                self.applied.append(gvar.name_hint)
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod
