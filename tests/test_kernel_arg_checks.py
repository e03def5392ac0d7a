"""compile/passes/kernel_arg_checks.py: the TIR pipeline deployables are built with drops the
kernels' argument checks and keeps the bound checks, built for the host and called."""

import numpy as np
import pytest
import tvm
from tvm.script import tirx as T

from tinyasr.compile.passes.bound_shape_vars import bound_check
from tinyasr.compile.passes.kernel_arg_checks import TIR_PIPELINE
from tinyasr.targets.boards import board_target, get_board


@T.prim_func(private=True)
def double(x: T.Buffer((4,), "float32"), y: T.Buffer((4,), "float32")):
    for i in range(4):
        y[i] = x[i] * T.float32(2)


def build(pipeline: str) -> tvm.runtime.Module:
    frames = tvm.tirx.Var("frames", "int64")
    mod = tvm.IRModule({"double": double.with_attr("global_symbol", "double"),
                        "encode_check_bounds": bound_check("encode", [(frames, 10)])})
    return tvm.tirx.build(mod, tvm.target.Target(board_target(get_board("host"))),
                          pipeline=pipeline)


def test_kernels_lose_their_checks_bound_checks_keep_theirs():
    checked, stripped = build("default"), build(TIR_PIPELINE)
    x = tvm.runtime.tensor(np.arange(4, dtype=np.float32))
    y = tvm.runtime.tensor(np.zeros(4, np.float32))
    stripped["double"](x, y)
    np.testing.assert_array_equal(y.numpy(), [0, 2, 4, 6])
    # a tensor of another dtype: TVM's check refuses it, the stripped kernel does not look
    wrong = tvm.runtime.tensor(np.zeros(4, np.int32))
    with pytest.raises(Exception, match="dtype"):
        checked["double"](x, wrong)
    stripped["double"](x, wrong)
    stripped["encode_check_bounds"](10)
    with pytest.raises(ValueError, match="encode: frames over this deployable's bound of 10"):
        stripped["encode_check_bounds"](11)
