"""fp32 weight-matmul kernels: each board's vector unit and register tile, sums equal to
numpy's on every row count (full tiles and one-row tails) and on widths the vectors do not
divide, the Fp32Matmul pass on a plain matrix, a linear layer and an odd width (and not on one
narrower than a vector), run through the whole compiler; a bias add and ReLU fused into the
kernel's store (and not when the product has another use); the weights file's keys kept
apart when lifted weights share a name; the int8 row-dot kernel (Whisper's int8 tied logits)
and the fp32 one against float64 numpy, with the threads of the host's pool."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, tirx
from tvm.target import Target

from tinyasr.compile.kernels.fp32 import (
    VectorUnit,
    fp32_matmul_kernel,
    fp32_matmul_tunable,
    vector_unit,
)
from tinyasr.compile.kernels.rowdot import rowdot_int8_kernel, rowdot_kernel
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build, weight_keys
from tinyasr.targets.boards import BOARDS, board_target, get_board

HOST = board_target(get_board("host"))


@pytest.mark.parametrize("board, unit", [
    ("x86-64-v3", VectorUnit(8, 16)),
    ("rpi4", VectorUnit(4, 32)),
    ("k230", VectorUnit(4, 32)),
])
def test_each_board_gets_its_vector_unit(board: str, unit: VectorUnit):
    assert vector_unit(Target(BOARDS[board].llvm_target)) == unit


def test_register_tile_fills_the_registers():
    assert VectorUnit(16, 32).tile(32) == (6, 4)   # fbank DFT on AVX-512: 24 accumulators
    assert VectorUnit(16, 32).tile(5) == (5, 5)    # mel (80 columns): the tile takes all 5
    assert VectorUnit(8, 16).tile(64) == (6, 2)    # AVX2: 12 accumulators of 16 registers


def test_the_tile_space_fits_the_registers_and_starts_at_the_default():
    unit = VectorUnit(8, 16)
    tiles = unit.tiles(64)
    assert tiles[0] == unit.tile(64) and len(set(tiles)) == len(tiles) > 10
    assert all(rows * width + width + 1 <= 16 and 64 % width == 0 for rows, width in tiles)


def _packed(w: np.ndarray, unit: VectorUnit) -> np.ndarray:
    k, n = w.shape
    padded = np.zeros((k, unit.blocks(n) * unit.lanes), np.float32)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(k, -1, unit.lanes).transpose(1, 0, 2))


@pytest.mark.parametrize("n, k, lower", [(80, 256, -np.inf), (64, 37, 0.0), (31, 144, 0.0),
                                         (3, 9, -np.inf)])
@pytest.mark.parametrize("point", [0, 1, -1])   # the template's default, another tile, the least
def test_kernel_sums_like_numpy(n: int, k: int, lower: float, point: int):
    """With a bias, with the ReLU clamp (lower 0) of a fused epilogue, and with a last partial
    block of lanes (31 columns: the decoder's output layer); at tiles of the template's space."""
    unit = vector_unit(Target(HOST))
    space = fp32_matmul_tunable(unit, n, k).space
    kernel = fp32_matmul_kernel(unit, n, k, space[point % len(space)]).with_attr(
        "global_symbol", "kernel")
    library = tvm.compile(tvm.IRModule({"kernel": kernel}), Target(HOST)).mod
    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    for rows in (1, 5, 37):   # below one tile, one tile minus one, tiles plus a tail
        x = rng.standard_normal((rows, k)).astype(np.float32)
        out = tvm.runtime.tensor(np.zeros((rows, n), np.float32))
        library["kernel"](*(tvm.runtime.tensor(a) for a in
                            [x, _packed(w, unit), bias, np.float32(lower)]), out)
        np.testing.assert_allclose(out.numpy(), np.maximum(x @ w + bias, lower),
                                   rtol=1e-4, atol=1e-4)


def _weight_matmuls(k: int) -> tvm.IRModule:
    """main(x (rows, k)) = (x @ plain, x @ linear.T, x @ odd, x @ narrow): a (k, 48) matrix, a
    (32, k) linear weight, a (k, 31) and a (k, 3) matrix, all weights."""
    rows = tirx.Var("rows", "int64")
    x = relax.Var("x", relax.TensorType([rows, k], "float32"))
    plain = relax.Var("plain", relax.TensorType([k, 48], "float32"))
    linear = relax.Var("linear", relax.TensorType([32, k], "float32"))
    odd = relax.Var("odd", relax.TensorType([k, 31], "float32"))
    narrow = relax.Var("narrow", relax.TensorType([k, 3], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x, plain, linear, odd, narrow], attrs={"num_input": 1}):
        with builder.dataflow():
            first = builder.emit(relax.op.matmul(x, plain))
            second = builder.emit(relax.op.matmul(x, relax.op.permute_dims(linear, [1, 0])))
            third = builder.emit(relax.op.matmul(x, odd))
            fourth = builder.emit(relax.op.matmul(x, narrow))
            out = builder.emit_output(relax.Tuple([first, second, third, fourth]))
        builder.emit_func_output(out)
    return builder.get()


def test_pass_turns_weight_matmuls_into_kernels(tmp_path):
    k = 24
    rng = np.random.default_rng(1)
    plain, linear, odd, narrow = (rng.standard_normal(shape).astype(np.float32)
                                  for shape in [(k, 48), (32, k), (k, 31), (k, 3)])
    imported = ImportedModel(_weight_matmuls(k), {"main": [
        tvm.runtime.tensor(w) for w in (plain, linear, odd, narrow)]})
    built = build(imported, HOST, IRDumper(tmp_path))
    lanes = vector_unit(Target(HOST)).lanes
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert all(f"fp32_matmul_{lanes}x{n}x{k}" in dense for n in (48, 32, 31))
    assert "x3x" not in dense   # narrower than a vector: stays a matmul

    x = rng.standard_normal((11, k)).astype(np.float32)
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    outs = vm["main"](tvm.runtime.tensor(x), *(built.weights[key] for key in
                                               built.signatures["main"].weights))
    for out, expected in zip(outs, [x @ plain, x @ linear.T, x @ odd, x @ narrow], strict=True):
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_weight_keys_number_a_repeated_name_apart():
    assert weight_keys("encode", ["lv3", "p_w", "lv3", "lv3"]) == [
        "encode/lv3", "encode/p_w", "encode/lv3_1", "encode/lv3_2"]


def _linear_bias_relu(k: int, n: int) -> tvm.IRModule:
    """main(x (rows, k)) = (relu(reshape(x @ w.T + b, (1, rows, n))), x @ w.T + b2 + x @ w.T):
    a torch FFN input layer, and a sum the bias may not swallow (its matmul is used twice)."""
    rows = tirx.Var("rows", "int64")
    x = relax.Var("x", relax.TensorType([rows, k], "float32"))
    w = relax.Var("w", relax.TensorType([n, k], "float32"))
    b = relax.Var("b", relax.TensorType([n], "float32"))
    b2 = relax.Var("b2", relax.TensorType([n], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x, w, b, b2], attrs={"num_input": 1}):
        with builder.dataflow():
            product = builder.emit(relax.op.matmul(x, relax.op.permute_dims(w, [1, 0])))
            biased = builder.emit(relax.op.add(b, product))
            relu = builder.emit(relax.op.nn.relu(relax.op.reshape(biased, [1, rows, n])))
            shared = builder.emit(relax.op.matmul(x, relax.op.permute_dims(w, [1, 0])))
            twice = builder.emit(relax.op.add(relax.op.add(shared, b2), shared))
            out = builder.emit_output(relax.Tuple([relu, twice]))
        builder.emit_func_output(out)
    return builder.get()


def test_bias_and_relu_move_into_the_kernel(tmp_path):
    k, n = 24, 32
    rng = np.random.default_rng(4)
    w, b, b2 = (rng.standard_normal(shape).astype(np.float32) for shape in [(n, k), n, n])
    built = build(ImportedModel(_linear_bias_relu(k, n), {"main": [
        tvm.runtime.tensor(a) for a in (w, b, b2)]}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert "R.nn.relu" not in dense and 'R.const(0.0, "float32")' in dense
    assert dense.count("R.add(") == 2   # the matmul used twice keeps both of its adds

    x = rng.standard_normal((9, k)).astype(np.float32)
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    relu, twice = vm["main"](tvm.runtime.tensor(x), *(built.weights[key] for key in
                                                       built.signatures["main"].weights))
    np.testing.assert_allclose(relu.numpy(), np.maximum(x @ w.T + b, 0)[None],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(twice.numpy(), 2 * (x @ w.T) + b2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lanes", [4, 16])
@pytest.mark.parametrize("n, k, group", [(51864, 384, 128), (130, 64, 32), (3, 32, 32)])
def test_rowdot_kernels_sum_like_numpy(n: int, k: int, group: int, lanes: int):
    """Whisper tiny.en's tied logits (51864 rows: tasks of 64, the last of 24; 3 scale groups
    of 128 columns a row), a task whose last group of 4 rows is moved back (130 = 2 * 64 + 2:
    a 2-row task, taken one row at a time; 2 scale groups), fewer rows than a group (3; one
    scale a row); with AVX-512's 16 lanes and the 4 of NEON and RVV (built for this host).
    fp32 sums of k products of O(1) x and O(100) int8 values times scales (O(1) fp32 values
    for the fp32 kernel): relative errors ~1e-7 measured, 1e-5 allowed."""
    unit = VectorUnit(lanes, 32)
    rng = np.random.default_rng(n)
    values = rng.integers(-127, 128, (n, k)).astype(np.int8)
    scale = rng.uniform(1e-3, 1e-1, (n, k // group)).astype(np.float32)
    dequantized = (values.astype(np.float64).reshape(n, k // group, group)
                   * scale[:, :, None]).reshape(n, k)
    weight = rng.standard_normal((n, k)).astype(np.float32)
    for kernel, w, expected_w in [(rowdot_int8_kernel(unit, n, k, group), [values, scale],
                                   dequantized),
                                  (rowdot_kernel(unit, n, k), [weight], weight)]:
        library = tvm.compile(tvm.IRModule({"rowdot": kernel.with_attr(
            "global_symbol", "rowdot")}), Target(HOST)).mod
        for rows in (1, 2, 5):
            x = rng.standard_normal((rows, k)).astype(np.float32)
            out = tvm.runtime.tensor(np.zeros((rows, n), np.float32))
            library["rowdot"](tvm.runtime.tensor(x), *map(tvm.runtime.tensor, w), out)
            expected = x.astype(np.float64) @ expected_w.astype(np.float64).T
            np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5,
                                       atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("n, k, group", [(51864, 384, 128), (130, 128, 64), (3, 64, 64)])
def test_interleaved_logits_and_gathers_read_one_table_like_numpy(n: int, k: int, group: int):
    """The VNNI logits kernel on the interleaved table: Whisper tiny.en's tied logits (a last
    block of 8 rows and 2 blocks of padding), a table of 3 tasks whose last block is partial
    (130; 2 scale groups), fewer rows than a block (3). It rounds each group of an activation
    row to int8 (times the scale's reciprocal) and sums on vpdpbusd: the same integers as
    numpy's rounding, so only fp32 summation order differs (~2e-7 of the largest output
    measured, 1e-5 allowed). The gathers give back the rows and scales of any token, ids out
    of range clipped as take(mode="clip") does. Compiled for an AVX-512 VNNI CPU everywhere
    (vpdpbusd in its code); run where this host has VNNI."""
    from tinyasr.compile.kernels.int8 import VNNI, dot_isa
    from tinyasr.compile.kernels.interleaved_rows import (
        interleave,
        interleaved_gather_kernel,
        interleaved_logits_kernel,
        interleaved_scales_gather_kernel,
    )

    mod = tvm.IRModule({
        "logits": interleaved_logits_kernel(n, k, group).with_attr("global_symbol", "logits"),
        "rows": interleaved_gather_kernel(n, k, "int64").with_attr("global_symbol", "rows"),
        "scales": interleaved_scales_gather_kernel(n, k // group, "int32").with_attr(
            "global_symbol", "scales")})
    vnni_cpu = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "cascadelake"}
    assert "vpdpbusd" in tvm.compile(mod, Target(vnni_cpu)).mod.inspect_source("asm")
    if dot_isa(Target(HOST)) is not VNNI:
        pytest.skip("this host has no AVX-512 VNNI to run it")
    library = tvm.compile(mod, Target(HOST)).mod
    rng = np.random.default_rng(n)
    values = rng.integers(-127, 128, (n, k)).astype(np.int8)
    scale = rng.uniform(1e-3, 1e-1, (n, k // group)).astype(np.float32)
    table, scales = map(tvm.runtime.tensor, interleave(values, scale))
    for rows in (1, 2, 5):
        x = rng.standard_normal((rows, k)).astype(np.float32)
        grouped = x.reshape(rows, k // group, group)
        x_scale = np.maximum(np.abs(grouped).max(axis=2), 1e-12) / np.float32(127)
        rounded = np.clip(np.round(grouped * (1 / x_scale)[:, :, None]), -127, 127)
        sums = np.einsum("igj,ngj->ing", rounded, values.reshape(n, k // group, group)
                         .astype(np.float64))
        expected = (sums * scale[None] * x_scale[:, None, :]).sum(axis=2)
        out = tvm.runtime.tensor(np.zeros((rows, n), np.float32))
        library["logits"](tvm.runtime.tensor(x), table, scales, out)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5,
                                   atol=1e-5 * np.abs(expected).max())
    tokens = np.array([0, n - 1, n // 2, -5, n + 7])
    rows_out = tvm.runtime.tensor(np.zeros((len(tokens), k), np.int8))
    library["rows"](table, tvm.runtime.tensor(tokens), rows_out)
    np.testing.assert_array_equal(rows_out.numpy(), values[np.clip(tokens, 0, n - 1)])
    scales_out = tvm.runtime.tensor(np.zeros((len(tokens), k // group), np.float32))
    library["scales"](scales, tvm.runtime.tensor(tokens.astype(np.int32)), scales_out)
    np.testing.assert_array_equal(scales_out.numpy(), scale[np.clip(tokens, 0, n - 1)])
