"""The decoder FSMN over a prefix tree (compile/passes/tree_fsmn.py): the gather of each node's
window, its int8 rounding at one scale and the depthwise conv1d compile to kernels that read
through the index, and compute what the ops compute."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, tirx
from tvm.target import Target

from tinyasr.compile.kernels.fp32 import VectorUnit
from tinyasr.compile.kernels.tree_fsmn import gather_abs_max_kernel, tree_fsmn_kernel
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build
from tinyasr.targets.boards import host_target

DIM, TAPS = 144, 11


def _tree_fsmn(rounded: bool) -> tvm.IRModule:
    """main(rows (N, DIM), index (U, TAPS), weight (TAPS, 1, DIM)): san_m's _tree_memory as the
    importer leaves it, the int8 model's rounding of the conv's input included if `rounded`."""
    n, nodes = tirx.Var("n", "int64"), tirx.Var("nodes", "int64")
    rows = relax.Var("rows", relax.TensorType([n, DIM], "float32"))
    index = relax.Var("index", relax.TensorType([nodes, TAPS], "int64"))
    weight = relax.Var("weight", relax.TensorType([TAPS, 1, DIM], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [rows, index, weight], attrs={"num_input": 2}):
        with builder.dataflow():
            windows = builder.emit(relax.op.take(rows, index, axis=0, mode="clip"))
            if rounded:
                peak = builder.emit(relax.op.max(relax.op.abs(windows)))
                scale = builder.emit(relax.op.divide(relax.op.clip(peak, 1e-12, float("inf")),
                                                     relax.const(127.0, "float32")))
                windows = builder.emit(relax.op.multiply(relax.op.clip(
                    relax.op.round(relax.op.divide(windows, scale)), -127, 127), scale))
            out = builder.emit_output(relax.op.nn.conv1d(
                windows, weight, groups=DIM, data_layout="NWC", kernel_layout="WIO",
                out_layout="NWC"))
        builder.emit_func_output(out)
    return builder.get()


def _reference(rows: np.ndarray, index: np.ndarray, weight: np.ndarray,
               rounded: bool) -> np.ndarray:
    windows = rows[np.clip(index, 0, len(rows) - 1)].astype(np.float64)   # (U, TAPS, DIM)
    if rounded:
        scale = max(np.abs(windows).max(), 1e-12) / 127
        windows = np.clip(np.round(windows / scale), -127, 127) * scale
    return np.einsum("ukc,kc->uc", windows, weight[:, 0, :])[:, None, :]


@pytest.mark.parametrize("rounded", [True, False])
def test_tree_fsmn_reads_the_windows_through_the_index(rounded: bool, tmp_path):
    rng = np.random.default_rng(int(rounded))
    weight = rng.standard_normal((TAPS, 1, DIM)).astype(np.float32)
    built = build(ImportedModel(_tree_fsmn(rounded), {"main": [tvm.runtime.tensor(weight)]}),
                  host_target(), IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert "tree_fsmn_d144_k11" in dense and "R.take" not in dense
    assert ("gather_abs_max_d144_k11" in dense) == rounded
    vm = relax.VirtualMachine(built.executable, tvm.cpu())  # pyright: ignore[reportArgumentType]
    weights = [built.weights[key] for key in built.signatures["main"].weights]
    for n, nodes in ((58, 457), (1, 3)):
        rows = rng.standard_normal((n, DIM)).astype(np.float32) * 3
        index = rng.integers(0, n, (nodes, TAPS))
        index[0, 0], index[-1, -1] = -5, n + 9          # clipped, as take's mode="clip"
        out = vm["main"](tvm.runtime.tensor(rows), tvm.runtime.tensor(index), *weights).numpy()
        np.testing.assert_allclose(out, _reference(rows, index, weight, rounded),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("unit, dim", [
    (VectorUnit(16, 32), 100),     # a last vector moved back over the one before
    (VectorUnit(4, 32), 144),      # 36 vectors: two groups of accumulators (NEON, RVV)
    (VectorUnit(8, 16), 17),       # AVX2 lanes, a tail
    (VectorUnit(16, 32), 5),       # narrower than the lanes: narrow vectors
    (VectorUnit(16, 32), 3)])      # narrower than a narrow vector: scalars
def test_kernels_cover_every_channel(unit: VectorUnit, dim: int):
    """The kernels in vectors of a unit's lanes, whatever the channels leave over, against
    float64 (built for this machine: the shapes of the loops are what is tested)."""
    rng = np.random.default_rng(dim)
    rows = rng.standard_normal((9, dim)).astype(np.float32)
    index = rng.integers(-3, 12, (13, TAPS))                  # some clipped
    weight = rng.standard_normal((TAPS, 1, dim)).astype(np.float32)
    windows = rows[np.clip(index, 0, len(rows) - 1)].astype(np.float64)
    for kernel, args, expected in [
            (tree_fsmn_kernel(unit, dim, TAPS), [rows, index, weight, np.zeros((13, 1, dim))],
             np.einsum("ukc,kc->uc", windows, weight[:, 0, :])[:, None, :]),
            (gather_abs_max_kernel(unit, dim, TAPS), [rows, index, np.zeros(())],
             np.abs(windows).max())]:
        built = tvm.compile(tvm.IRModule({"main": kernel.with_attr("global_symbol", "main")}),
                            Target(host_target()))
        tensors = [tvm.runtime.tensor(np.asarray(a, dtype=a.dtype if a.dtype == np.int64
                                                 else np.float32)) for a in args]
        built["main"](*tensors)
        np.testing.assert_allclose(tensors[-1].numpy(), expected, rtol=1e-5, atol=1e-5)
