"""Static memory planning with upper bounds (compile/passes/bound_shape_vars.py): a bounded
function's intermediates get storage of a size known at compile time, shared across sizes, and
a call past the bound is refused rather than written out of bounds."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from tvm import relax, tirx
from tvm.target import Target

from tinyasr.compile.passes.name_shape_vars import name_shape_vars
from tinyasr.compile.pipeline import lower_passes
from tinyasr.targets.boards import host_target

BOUND = 64
STATIC_STORAGE = re.compile(r"alloc_storage\(R\.shape\(\[(\d+)\]\)")
DYNAMIC_STORAGE = re.compile(r"alloc_storage\(gv")


def _chain() -> tvm.IRModule:
    """main(x (n,)) -> exp(x) * 2 + sum(x): intermediates of sizes n and 1, legalized."""
    n = tirx.Var("n", "int64")
    x = relax.Var("x", relax.TensorType([n], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x]):
        with builder.dataflow():
            exp = builder.emit(relax.op.exp(x))
            doubled = builder.emit(relax.op.multiply(exp, relax.const(2.0, "float32")))
            total = builder.emit(relax.op.sum(x, keepdims=True))
            out = builder.emit_output(relax.op.add(doubled, total))
        builder.emit_func_output(out)
    return relax.transform.LegalizeOps()(builder.get())


def _lowered(bounds: dict[str, int]) -> tvm.IRModule:
    with Target(host_target()):
        return tvm.transform.Sequential(lower_passes(bounds))(_chain())


def test_bounded_sizes_plan_static_storage_of_the_bound():
    bounded = _lowered({"n": BOUND, "unused": 7}).script(show_meta=False)
    sizes = [int(size) for size in STATIC_STORAGE.findall(bounded)]
    assert len(DYNAMIC_STORAGE.findall(bounded)) == 1   # the result's, which the caller keeps
    assert BOUND * 4 in sizes                      # the (n,) float32 intermediates at the bound
    assert '"tir_var_upper_bound": {"n": 64}' in bounded
    unbounded = _lowered({}).script(show_meta=False)
    assert len(DYNAMIC_STORAGE.findall(unbounded)) > 1 and "check_bounds" not in unbounded


def test_a_bounded_function_computes_up_to_the_bound_and_refuses_past_it():
    executable = tvm.compile(_lowered({"n": BOUND}), Target(host_target()), relax_pipeline=None)
    vm = relax.VirtualMachine(executable, tvm.cpu())  # pyright: ignore[reportArgumentType]
    rng = np.random.default_rng(0)
    for n in (1, BOUND // 2, BOUND):   # each call reuses the storage planned for BOUND
        x = rng.standard_normal(n).astype(np.float32)
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        np.testing.assert_allclose(got, np.exp(x) * 2 + x.sum(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=f"main: n over this deployable's bound of {BOUND}"):
        vm["main"](tvm.runtime.tensor(np.zeros(BOUND + 1, np.float32)))


def test_the_importers_upper_bounds_are_dropped_with_the_rename():
    """A torch.export Dim's max is not a size to plan memory for (Whisper's step would plan its
    logits for 64 x 448 tokens): only the compiler's own bounds reach the planner."""
    n = tirx.Var("s15", "int64")
    x = relax.Var("x", relax.TensorType([n], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x], attrs={"tir_var_lower_bound": {"s15": 1},
                                              "tir_var_upper_bound": {"s15": 64}}):
        builder.emit_func_output(relax.op.exp(x))
    named = name_shape_vars(builder.get()["main"], {("x", 0): "tokens"})
    assert dict(named.attrs["tir_var_lower_bound"]) == {"tokens": 1}
    assert "tir_var_upper_bound" not in named.attrs
    assert [str(d) for d in named.params[0].ty.shape.values] == ["tokens"]
