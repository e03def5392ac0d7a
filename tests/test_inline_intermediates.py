"""The schedule phase's default for untuned functions (compile/passes/inline_intermediates.py):
fused intermediates computed inside their one consumer, on functions legalized and fused by the
compiler's own passes, built and run."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.s_tir.schedule import Schedule
from tvm.script import relax as R

from tinyasr.compile.kernels.int8 import VNNI, int8_matmul_kernel
from tinyasr.compile.passes.inline_intermediates import InlineIntermediates
from tinyasr.compile.pipeline import LEGALIZE_PASSES


@tvm.script.ir_module
class RoundingAndSoftmax:
    @R.function
    def main(x: R.Tensor(("frames", 144), "float32"), scale: R.Tensor((), "float32")):
        with R.dataflow():
            rounded = R.multiply(R.clip(R.round(R.divide(x, scale)), -127, 127), scale)
            weights = R.nn.softmax(R.matmul(rounded, R.permute_dims(rounded)), axis=-1)
            R.output(rounded, weights)
        return rounded, weights


def _legalized() -> tvm.IRModule:
    return tvm.transform.Sequential(LEGALIZE_PASSES)(RoundingAndSoftmax)


def _blocks(func: tvm.tirx.PrimFunc) -> list[str]:
    schedule = Schedule(func)
    return [schedule.get(block).name_hint
            for block in schedule.get_child_blocks(schedule.get_sblock("root"))]


def _function(mod: tvm.IRModule, part: str) -> tvm.tirx.PrimFunc:
    (func,) = [func for gvar, func in mod.functions.items() if part in gvar.name_hint]
    return func


def _run(mod: tvm.IRModule, x: np.ndarray, scale: float) -> list[np.ndarray]:
    with tvm.target.Target("llvm"):
        lowered = relax.transform.RemovePurityChecking()(relax.transform.ToNonDataflow()(mod))
    vm = relax.VirtualMachine(tvm.compile(lowered, "llvm"), tvm.cpu())
    return [out.numpy() for out in vm["main"](tvm.runtime.tensor(x),
                                              tvm.runtime.tensor(np.float32(scale)))]


def test_an_elementwise_chain_becomes_one_loop_nest():
    legalized = _legalized()
    inlined = InlineIntermediates()(_legalized())
    assert len(_blocks(_function(legalized, "round"))) == 4
    assert len(_blocks(_function(inlined, "round"))) == 1


def test_an_intermediate_read_twice_is_computed_once():
    """The softmax's exponentials feed its sum and its normalization: they stay a buffer."""
    inlined = InlineIntermediates()(_legalized())
    assert any("exp" in name for name in _blocks(_function(inlined, "softmax")))


def test_inlined_functions_compute_the_same():
    x = np.random.default_rng(0).standard_normal((37, 144)).astype(np.float32)
    for expected, actual in zip(_run(_legalized(), x, 0.02),
                                _run(InlineIntermediates()(_legalized()), x, 0.02), strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_hand_written_kernels_are_left_alone():
    kernel = int8_matmul_kernel(VNNI, 144, 144)
    mod = InlineIntermediates()(tvm.IRModule({"kernel": kernel}))
    assert mod["kernel"].same_as(kernel)

