"""The checks a tuned schedule passes before compile replays it on symbolic shapes
(tinyasr.compile.passes.apply_tuned_schedules.sound_on_symbolic), on real TIR schedules."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te
from tvm.s_tir.schedule import Schedule

from tinyasr.compile.passes.apply_tuned_schedules import replay_on_symbolic, sound_on_symbolic
from tinyasr.compile.schedule_database import static_workload

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


def _row_abs_max(name: str) -> tvm.tirx.PrimFunc:
    """max |x| per row, its blocks named after `name`: one of six layers' identical reductions."""
    x = te.placeholder((FRAMES, 576), name=f"{name}_in")
    k = te.reduce_axis((0, 576), name="k")
    return te.create_prim_func([x, te.compute(
        (FRAMES,), lambda i: te.max(te.abs(x[i, k]), axis=k), name=f"{name}_red")])


def test_a_record_replays_on_an_equal_function_whose_blocks_have_other_names():
    tuned_on, other = _row_abs_max("first"), _row_abs_max("sixth")
    workload = static_workload(tuned_on)
    schedule = Schedule(workload)
    _, k = schedule.get_loops(schedule.get_sblock("first_red"))
    _, lanes = schedule.split(k, [None, 16])
    schedule.rfactor(lanes, 0)
    schedule.vectorize(schedule.get_loops(schedule.get_sblock("first_red_rf"))[-1])
    with pytest.raises(Exception, match="first_red"):
        replay_on_symbolic(schedule.trace, other)       # the names of the function tuned on

    replayed = replay_on_symbolic(schedule.trace, other, workload["main"])
    assert "sixth_red_rf" in replayed.script() and "first" not in replayed.script()
    module = tvm.compile(tvm.IRModule({"main": replayed.with_attr("global_symbol", "main")}),
                         target="llvm")
    x = np.random.default_rng(0).standard_normal((123, 576)).astype("float32")
    out = tvm.runtime.tensor(np.zeros(123, "float32"))
    module["main"](tvm.runtime.tensor(x), out)
    np.testing.assert_array_equal(out.numpy(), np.abs(x).max(axis=1))
