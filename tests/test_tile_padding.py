"""Tuned traces replayed on symbolic loops padded to their inner tiles
(tinyasr.compile.passes.tile_padding), built and run."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import te
from tvm.s_tir.schedule import Schedule, Trace

from tinyasr.compile.passes.apply_tuned_schedules import replay_on_symbolic, sound_on_symbolic
from tinyasr.compile.schedule_database import static_workload

FRAMES = tvm.tirx.Var("frames", "int64")
K, N = 40, 64


def _fbank_matmul() -> tvm.tirx.PrimFunc:
    """(frames * 4 + 3, K) x (K, N): the fbank's rows, 515 at the tuning size (frames 128)."""
    frames = te.placeholder((FRAMES * 4 + 3, K), name="frames_in")
    weights = te.placeholder((K, N), name="weights")
    k = te.reduce_axis((0, K), name="k")
    product = te.compute((FRAMES * 4 + 3, N),
                         lambda i, j: te.sum(frames[i, k] * weights[k, j], axis=k), name="matmul")
    return te.create_prim_func([frames, weights, product, FRAMES])


def _tuned_trace(workload: tvm.IRModule) -> Trace:
    """A trace shaped like MetaSchedule's CPU ones: SSRSRS tiles (515 rows as 103 x 5), a
    write cache, the root's children fetched by position, a vectorized inner loop."""
    schedule = Schedule(workload)
    block = schedule.get_sblock("matmul")
    schedule.annotate(block, "meta_schedule.tiling_structure", "SSRSRS")
    rows, columns, reduction = schedule.get_loops(block)
    i0, i1, i2, i3 = schedule.split(rows, schedule.sample_perfect_tile(
        rows, n=4, max_innermost_factor=64, decision=[1, 103, 5, 1]))
    j0, j1, j2, j3 = schedule.split(columns, schedule.sample_perfect_tile(
        columns, n=4, max_innermost_factor=64, decision=[1, 2, 1, 32]))
    k0, k1 = schedule.split(reduction, schedule.sample_perfect_tile(
        reduction, n=2, max_innermost_factor=64, decision=[5, 8]))
    schedule.reorder(i0, j0, i1, j1, k0, i2, j2, k1, i3, j3)
    cache = schedule.cache_write(block, 0, "global")
    schedule.reverse_compute_at(cache, j0)
    schedule.vectorize(j3)
    compute, _ = schedule.get_child_blocks(schedule.get_sblock("root"))
    schedule.decompose_reduction(compute, k0)
    return schedule.trace


def _root_blocks(func: tvm.tirx.PrimFunc) -> list[str]:
    schedule = Schedule(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}))
    return [schedule.get(block).name_hint
            for block in schedule.get_child_blocks(schedule.get_sblock("root"))]


def test_a_symbolic_row_loop_is_padded_to_its_tuned_micro_kernel():
    func = _fbank_matmul()
    workload = static_workload(func)
    replayed = replay_on_symbolic(_tuned_trace(workload), func)

    assert {"frames_in_pad", "matmul_pad"} <= set(_root_blocks(replayed))
    assert "(frames * T.int64(4) + T.int64(7)) // T.int64(5) * T.int64(5)" in replayed.script()
    assert sound_on_symbolic(replayed, workload)

    module = tvm.compile(tvm.IRModule({"main": replayed.with_attr("global_symbol", "main")}),
                         target="llvm")
    rng = np.random.default_rng(0)
    for frames in (124, 128, 3):       # 499 rows (4 padded), 515 (none), 15 (less than a tile)
        a = rng.standard_normal((frames * 4 + 3, K)).astype("float32")
        b = rng.standard_normal((K, N)).astype("float32")
        out = tvm.runtime.tensor(np.full((frames * 4 + 3, N), np.nan, "float32"))
        module["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), out, frames)
        np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-4)


def test_a_static_loop_is_replayed_unpadded():
    workload = static_workload(_fbank_matmul())
    replayed = replay_on_symbolic(_tuned_trace(workload), workload["main"])
    assert not any(name.endswith("_pad") for name in _root_blocks(replayed))
