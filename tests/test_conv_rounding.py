"""An fp32 convolution only rounded to int8 at one scale (compile/passes/conv_rounding.py) is
computed twice by two kernels and never stored, and rounds as the ops it replaces do."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, tirx

from tinyasr.compile.pipeline import ImportedModel, IRDumper, build
from tinyasr.targets.boards import host_target

WIDTH, OUT = 80, 32


def _rounded_conv(relu: bool) -> tvm.IRModule:
    """main(x (1, H, 80, 1); weight (32, 3, 3, 1), bias (32,)) -> (int8 rounding, its scale):
    the SAN-M subsampling's first convolution as the int8 model's next layer rounds it."""
    height = tirx.Var("height", "int64")
    x = relax.Var("x", relax.TensorType([1, height, WIDTH, 1], "float32"))
    weight = relax.Var("weight", relax.TensorType([OUT, 3, 3, 1], "float32"))
    bias = relax.Var("bias", relax.TensorType([OUT], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x, weight, bias], attrs={"num_input": 1}):
        with builder.dataflow():
            y = builder.emit(relax.op.add(relax.op.nn.conv2d(
                x, weight, strides=[2, 2], data_layout="NHWC", kernel_layout="OHWI"),
                relax.op.reshape(bias, [1, 1, 1, OUT])))
            if relu:
                y = builder.emit(relax.op.nn.relu(y))
            peak = builder.emit(relax.op.max(relax.op.abs(y)))
            scale = builder.emit(relax.op.divide(relax.op.clip(peak, 1e-12, float("inf")),
                                                 relax.const(127.0, "float32")))
            rounded = builder.emit(relax.op.astype(relax.op.clip(
                relax.op.round(relax.op.divide(y, scale)), -127, 127), "int8"))
            out = builder.emit_output(relax.Tuple([rounded, scale]))
        builder.emit_func_output(out)
    return builder.get()


@pytest.mark.parametrize("relu", [True, False])
def test_a_rounded_conv_is_recomputed_not_stored(relu: bool, tmp_path):
    rng = np.random.default_rng(int(relu))
    weight = rng.standard_normal((OUT, 3, 3, 1)).astype(np.float32)
    bias = rng.standard_normal(OUT).astype(np.float32)
    built = build(ImportedModel(_rounded_conv(relu), {"main": [tvm.runtime.tensor(weight),
                                                               tvm.runtime.tensor(bias)]}),
                  host_target(), IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert "conv_abs_max_" in dense and "conv_rounded_" in dense
    assert "conv2d" not in dense and "im2col" not in dense
    vm = relax.VirtualMachine(built.executable, tvm.cpu())  # pyright: ignore[reportArgumentType]
    weights = [built.weights[key] for key in built.signatures["main"].weights]
    for height in (41, 4):
        x = rng.standard_normal((1, height, WIDTH, 1)).astype(np.float32) * 2
        rounded, scale = (t.numpy() for t in vm["main"](tvm.runtime.tensor(x), *weights))
        out_h, out_w = (height - 3) // 2 + 1, (WIDTH - 3) // 2 + 1
        taps = np.stack([x[0, i:i + 2 * out_h - 1:2, j:j + 2 * out_w - 1:2, 0]
                         for i in range(3) for j in range(3)], axis=-1).astype(np.float64)
        y = taps @ weight.reshape(OUT, 9).T.astype(np.float64) + bias
        y = np.maximum(y, 0) if relu else y
        assert float(scale) == pytest.approx(np.abs(y).max() / 127, rel=1e-5)
        expected = np.clip(np.round(y / float(scale)), -127, 127)
        # float32 sums may land on the other side of a rounding midpoint, never further
        differ = rounded[0] != expected
        assert np.abs(rounded[0] - expected).max() <= 1 and differ.mean() < 1e-3
