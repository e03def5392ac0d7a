"""The checks a tuned schedule passes before compile replays it on symbolic shapes
(tinyasr.compile.passes.apply_tuned_schedules.sound_on_symbolic), on real TIR schedules."""

from __future__ import annotations

import tvm
from tvm import te
from tvm.s_tir.schedule import Schedule

from tinyasr.compile.passes.apply_tuned_schedules import sound_on_symbolic
from tinyasr.schedules.database import static_workload

FRAMES = tvm.tirx.Var("frames", "int64")


def _scores() -> tvm.tirx.PrimFunc:
    """(frames, 36) x (36, frames): the shape of an attention score matmul."""
    q = te.placeholder((FRAMES, 36), name="q")
    k = te.placeholder((36, FRAMES), name="k")
    r = te.reduce_axis((0, 36), name="r")
    return te.create_prim_func([q, k, te.compute(
        (FRAMES, FRAMES), lambda i, j: te.sum(q[i, r] * k[r, j], axis=r), name="scores")])


def _normalized_rows() -> tvm.tirx.PrimFunc:
    """x / (sum of its row), the shape of a softmax's last step."""
    x = te.placeholder((4, FRAMES), name="x")
    j = te.reduce_axis((0, FRAMES), name="j")
    total = te.compute((4,), lambda i: te.sum(x[i, j], axis=j), name="total")
    return te.create_prim_func([x, te.compute((4, FRAMES), lambda i, c: x[i, c] / total[i],
                                              name="normalized")])


def _schedule(func: tvm.tirx.PrimFunc) -> Schedule:
    return Schedule(tvm.IRModule({"main": func}))


def test_a_vector_tail_on_a_symbolic_axis_of_a_reduction_is_refused():
    func = _scores()
    schedule = _schedule(func)
    _, columns, _ = schedule.get_loops(schedule.get_sblock("scores"))
    schedule.vectorize(schedule.split(columns, [None, 16])[1])
    assert not sound_on_symbolic(schedule.mod["main"], static_workload(func))


def test_a_reduction_recomputed_per_element_is_refused():
    func = _normalized_rows()
    schedule = _schedule(func)
    _, columns = schedule.get_loops(schedule.get_sblock("normalized"))
    schedule.compute_at(schedule.get_sblock("total"), columns)
    assert not sound_on_symbolic(schedule.mod["main"], static_workload(func))


def test_tiling_without_vector_tails_or_extra_work_is_kept():
    func = _scores()
    schedule = _schedule(func)
    rows, _, _ = schedule.get_loops(schedule.get_sblock("scores"))
    schedule.split(rows, [None, 8])
    assert sound_on_symbolic(schedule.mod["main"], static_workload(func))
