"""The layout phase and the activation kernels: SinkPermutes cancels the permutes ConvertLayout
leaves around `clip`, the channels-last im2col kernel equals numpy's, an fp32 conv on a weight
compiles to im2col + the fp32 kernel and computes torch's conv2d; the batched kernel of the
attention's matmuls equals numpy's for every kind of width, and attention not in torch's export
layout compiles to it; scores against the decoder's key caches read them untransposed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm import relax, tirx
from tvm.target import Target

from tinyasr.compile.kernels.batched import (
    batched_matmul_kernel,
    batched_matmul_transposed_kernel,
    fixed_width_supported,
    transposed_supported,
)
from tinyasr.compile.kernels.fp32 import VectorUnit, vector_unit
from tinyasr.compile.kernels.im2col import im2col_kernel
from tinyasr.compile.passes.sink_permutes import SinkPermutes
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build
from tinyasr.targets.boards import board_target, get_board

HOST = board_target(get_board("host"))
NHWC, NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _ops(function: relax.Function) -> list[str]:
    calls: list[str] = []
    relax.analysis.post_order_visit(function.body, lambda node: calls.append(node.op.name) if (
        isinstance(node, relax.Call) and isinstance(node.op, tvm.ir.Op)) else None)
    return calls


def _softmax(scores: np.ndarray) -> np.ndarray:
    """numpy's softmax along the last axis: the kernels' reference."""
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def _batched_library(kernel: tirx.PrimFunc) -> tvm.runtime.Module:
    """The kernel built alone for the host, callable as "batched"."""
    kernel = kernel.with_attr("global_symbol", "batched")
    return tvm.compile(tvm.IRModule({"batched": kernel}), Target(HOST)).mod


def test_permutes_around_clip_cancel():
    """round -> permute to NCHW -> clip -> * s -> permute to NHWC: what ConvertLayout leaves of
    the int8 rounding between two channels-last convs."""
    x = relax.Var("x", relax.TensorType([1, 5, 7, 3], "float32"))
    s = relax.Var("s", relax.TensorType([], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x, s]):
        with builder.dataflow():
            rounded = builder.emit(relax.op.round(relax.op.divide(x, s)))
            nchw = builder.emit(relax.op.permute_dims(rounded, NCHW))
            clipped = builder.emit(relax.op.clip(nchw, -127, 127))
            scaled = builder.emit(relax.op.multiply(clipped, s))
            out = builder.emit_output(relax.op.permute_dims(scaled, NHWC))
        builder.emit_func_output(out)
    before = builder.get()
    after = relax.transform.DeadCodeElimination()(SinkPermutes()(before))
    assert "relax.permute_dims" not in _ops(after["main"])
    assert _ops(after["main"]).count("relax.clip") == 1

    values = np.random.default_rng(0).standard_normal((1, 5, 7, 3)).astype(np.float32) * 300
    outputs = []
    for mod in (before, after):
        vm = relax.VirtualMachine(tvm.compile(mod, Target(HOST)), tvm.cpu())
        outputs.append(vm["main"](tvm.runtime.tensor(values),
                                  tvm.runtime.tensor(np.float32(2.0))).numpy())
    np.testing.assert_array_equal(*outputs)


@pytest.mark.parametrize("dtype, channels, width", [("int8", 32, 39), ("float32", 1, 80)])
def test_im2col_kernel_equals_numpy(dtype: str, channels: int, width: int):
    kernel = im2col_kernel(dtype, channels, width, (3, 3), (2, 2)).with_attr(
        "global_symbol", "im2col")
    library = tvm.compile(tvm.IRModule({"im2col": kernel}), Target(HOST)).mod
    for height in (3, 4, 17):
        image = (np.random.default_rng(height).standard_normal((1, height, width, channels))
                 * 50).astype(dtype)
        out_h, out_w = (height - 3) // 2 + 1, (width - 3) // 2 + 1
        taps = [image[0, i:i + 2 * out_h - 1:2, j:j + 2 * out_w - 1:2] for i in range(3)
                for j in range(3)]
        expected = np.stack(taps, axis=2).reshape(out_h * out_w, 9 * channels)
        out = tvm.runtime.tensor(np.zeros_like(expected))
        library["im2col"](tvm.runtime.tensor(image), out)
        np.testing.assert_array_equal(out.numpy(), expected)


def test_fp32_conv_compiles_to_im2col_and_the_kernel(tmp_path):
    """A torch-style NCHW conv (1 -> 32 channels, 3x3, stride 2: the subsampling's first) on a
    symbolic height."""
    height = tirx.Var("height", "int64")
    x = relax.Var("x", relax.TensorType([1, 1, height, 80], "float32"))
    weight = relax.Var("weight", relax.TensorType([32, 1, 3, 3], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x, weight], attrs={"num_input": 1}):
        with builder.dataflow():
            out = builder.emit_output(relax.op.nn.conv2d(x, weight, strides=[2, 2]))
        builder.emit_func_output(out)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    built = build(ImportedModel(builder.get(), {"main": [tvm.runtime.tensor(w)]}), HOST,
                  IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert "im2col_float32_1x80" in dense and "fp32_matmul_" in dense
    assert "conv2d" not in next(tmp_path.glob("*-lower.py")).read_text()

    image = rng.standard_normal((1, 1, 25, 80)).astype(np.float32)
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(image), *(built.weights[key] for key in
                                                  built.signatures["main"].weights)).numpy()
    expected = torch.nn.functional.conv2d(torch.from_numpy(image), torch.from_numpy(w),
                                          stride=2).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n, fixed, y_dtype", [
    (123, False, "float32"), (36, False, "float32"), (36, True, "float32"), (8, True, "float32"),
    (16, False, "float32"), (7, False, "float32"), (3, False, "float32"), (36, True, "float16"),
    (64, True, "float16")])
def test_batched_kernel_equals_numpy(n: int, fixed: bool, y_dtype: str):
    """Symbolic widths: an overlapping last vector (123, 36), exact (16), narrow (7), scalar
    (3); fixed widths: vectors plus a narrower one (36 = 16 + 16 + 4), one narrow vector (8);
    y stored as float16 and widened (Whisper's cross-attention values: 64), compared with
    numpy on the same float16 values."""
    unit = vector_unit(Target(HOST))
    assert not fixed or fixed_width_supported(unit, n)
    library = _batched_library(batched_matmul_kernel(unit, n if fixed else None, y_dtype))
    rng = np.random.default_rng(n)
    for rows, depth, groups in [(13, 36, 4), (2, 5, 4), (13, 36, 2)]:
        x = rng.standard_normal((4, rows, depth)).astype(np.float32)
        y = rng.standard_normal((groups, depth, n)).astype(y_dtype)
        out = tvm.runtime.tensor(np.zeros((4, rows, n), np.float32))
        library["batched"](tvm.runtime.tensor(x), tvm.runtime.tensor(y), out)
        # y's batch shared by x's batches b % groups
        expected = x @ y[np.arange(4) % groups].astype(np.float32)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_attention_matmuls_compile_to_the_batched_kernel(tmp_path):
    """scores = q @ k^T and context = softmax(scores) @ v per head, on symbolic frames, not in
    the layout torch exports attention in (FusedAttention's pattern): the batched kernels."""
    frames = tirx.Var("frames", "int64")
    q, k, v = (relax.Var(name, relax.TensorType([4, frames, 36], "float32")) for name in "qkv")
    builder = relax.BlockBuilder()
    with builder.function("main", [q, k, v], attrs={"num_input": 3}):
        with builder.dataflow():
            scores = builder.emit(relax.op.matmul(q, relax.op.permute_dims(k, [0, 2, 1])))
            context = builder.emit(relax.op.matmul(relax.op.nn.softmax(scores), v))
            out = builder.emit_output(context)
        builder.emit_func_output(out)
    built = build(ImportedModel(builder.get(), {"main": []}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert "R.matmul" not in dense
    lanes = vector_unit(Target(HOST)).lanes
    assert f"cls.batched_matmul_{lanes}, " in dense      # the scores: N = frames
    assert f"cls.batched_matmul_{lanes}_n36, " in dense  # the context: N = 36

    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((4, 29, 36)).astype(np.float32) for _ in range(3)]
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    out = vm["main"](*(tvm.runtime.tensor(a) for a in arrays)).numpy()
    scores = arrays[0] @ arrays[1].transpose(0, 2, 1)
    expected = _softmax(scores) @ arrays[2]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_cross_attention_reads_the_shared_keys_and_values_once(tmp_path):
    """The decoder's cross-attention as torch exports it: every hypothesis' queries against one
    utterance's keys and values, broadcast to (hypotheses, heads, ...) and flattened. The
    kernels read the (heads, ...) originals; no broadcast copy is left."""
    hypotheses, steps, frames = (tirx.Var(name, "int64") for name in ("hypotheses", "steps",
                                                                          "frames"))
    q = relax.Var("q", relax.TensorType([hypotheses, 4, steps, 36], "float32"))
    k, v = (relax.Var(name, relax.TensorType([1, 4, frames, 36], "float32")) for name in "kv")

    def flat(x: relax.Expr, rows: tirx.Expr, columns: tirx.Expr) -> relax.Expr:
        shared = relax.op.broadcast_to(x, [hypotheses, 4, rows, columns])
        return builder.emit(relax.op.reshape(shared, [hypotheses * 4, rows, columns]))

    builder = relax.BlockBuilder()
    with builder.function("main", [q, k, v], attrs={"num_input": 3}):
        with builder.dataflow():
            queries = builder.emit(relax.op.reshape(q, [hypotheses * 4, steps, 36]))
            keys = flat(relax.op.permute_dims(k, [0, 1, 3, 2]), 36, frames)
            scores = builder.emit(relax.op.nn.softmax(relax.op.matmul(queries, keys)))
            context = builder.emit(relax.op.matmul(scores, flat(v, frames, 36)))
            out = builder.emit_output(context)
        builder.emit_func_output(out)
    built = build(ImportedModel(builder.get(), {"main": []}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert "R.matmul" not in dense and "broadcast_to" not in dense

    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(shape).astype(np.float32)
              for shape in [(3, 4, 7, 36), (1, 4, 29, 36), (1, 4, 29, 36)]]
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    out = vm["main"](*(tvm.runtime.tensor(a) for a in arrays)).numpy()
    scores = arrays[0] @ arrays[1].transpose(0, 1, 3, 2)
    expected = (_softmax(scores) @ arrays[2]).reshape(12, 7, 36)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("y_dtype", ["float32", "float16"])
@pytest.mark.parametrize("lanes", [4, 8, 16])
@pytest.mark.parametrize("n", [1500, 29, 4, 3])
def test_transposed_batched_kernel_equals_numpy(n: int, lanes: int, y_dtype: str):
    """y read as (G, N, K) rows: N a multiple of the column group (1500), not (29: the last
    columns moved back), exactly one group (4), below it (3: one column at a time); x's batch
    b reads y's batch b % G (G = B, a shared G = heads, one). Every vector width a board has
    (NEON and RVV 4 lanes, AVX 8, AVX-512 16: each its own lane sums), built for this host;
    y as float32 or stored as float16 (Whisper's cross-attention keys in an int8 build)."""
    unit = VectorUnit(lanes, 32)
    depth = 4 * unit.lanes
    assert transposed_supported(unit, depth)
    library = _batched_library(batched_matmul_transposed_kernel(unit, depth, y_dtype))
    rng = np.random.default_rng(n)
    for batch, rows, groups in [(6, 1, 6), (12, 2, 6), (3, 5, 1)]:
        x = rng.standard_normal((batch, rows, depth)).astype(np.float32)
        y = rng.standard_normal((groups, n, depth)).astype(y_dtype)
        out = tvm.runtime.tensor(np.zeros((batch, rows, n), np.float32))
        library["batched"](tvm.runtime.tensor(x), tvm.runtime.tensor(y), out)
        # float64 reference; fp32 sums of 64 products of O(1) values: ~1e-6 relative each
        expected = np.einsum("bik,bnk->bin", x.astype(np.float64),
                             y[np.arange(batch) % groups].astype(np.float64))
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_scores_against_key_caches_read_them_untransposed(tmp_path):
    """The decoder's scores as torch exports them, q @ k.transpose(-1, -2) per head, against a
    shared (1, heads, frames, E) cross-attention key cache and a per-hypothesis (hypotheses,
    heads, slots, E) self-attention one: the transposed kernel reads both as stored, no
    transposed copy is left."""
    hypotheses, steps, frames = (tirx.Var(name, "int64") for name in ("hypotheses", "steps",
                                                                          "frames"))
    head_dim = 32   # whole vectors for 4, 8 and 16 lanes
    q = relax.Var("q", relax.TensorType([hypotheses, 4, steps, head_dim], "float32"))
    cross = relax.Var("cross", relax.TensorType([1, 4, frames, head_dim], "float32"))
    own = relax.Var("own", relax.TensorType([hypotheses, 4, 11, head_dim], "float32"))
    builder = relax.BlockBuilder()

    def scores(keys: relax.Expr, slots: tirx.Expr) -> relax.Expr:
        transposed = relax.op.permute_dims(keys, [0, 1, 3, 2])
        shared = relax.op.broadcast_to(transposed, [hypotheses, 4, head_dim, slots])
        flat = builder.emit(relax.op.reshape(shared, [hypotheses * 4, head_dim, slots]))
        queries = builder.emit(relax.op.reshape(q, [hypotheses * 4, steps, head_dim]))
        return builder.emit(relax.op.matmul(queries, flat))

    with builder.function("main", [q, cross, own], attrs={"num_input": 3}):
        with builder.dataflow():
            both = builder.emit(relax.op.concat([scores(cross, frames), scores(own, 11)], 2))
            out = builder.emit_output(both)
        builder.emit_func_output(out)
    built = build(ImportedModel(builder.get(), {"main": []}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert "R.matmul" not in dense and "permute_dims" not in dense
    assert dense.count(f"cls.batched_matmul_t_{vector_unit(Target(HOST)).lanes}_k{head_dim}, ") == 2

    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in
              [(3, 4, 2, head_dim), (1, 4, 29, head_dim), (3, 4, 11, head_dim)]]
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    out = vm["main"](*(tvm.runtime.tensor(a) for a in arrays)).numpy()
    q64, cross64, own64 = (a.astype(np.float64) for a in arrays)
    expected = np.concatenate([q64 @ cross64.transpose(0, 1, 3, 2),
                               q64 @ own64.transpose(0, 1, 3, 2)], axis=3).reshape(12, 2, 40)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_permutes_around_pad_and_abs_max_cancel():
    """The FSMN memory block with its conv1d channels-last: permute to NCW -> pad the time axis
    -> int8 rounding with the tensor's abs-max scale -> permute to NWC."""
    x = relax.Var("x", relax.TensorType([2, 9, 6], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x]):
        with builder.dataflow():
            ncw = builder.emit(relax.op.permute_dims(x, [0, 2, 1]))
            padded = builder.emit(relax.op.nn.pad(ncw, [0, 0, 0, 0, 3, 0]))
            scale = builder.emit(relax.op.divide(
                relax.op.max(relax.op.abs(padded), axis=[0, 1, 2]), relax.const(127.0)))
            rounded = builder.emit(relax.op.multiply(
                relax.op.clip(relax.op.round(relax.op.divide(padded, scale)), -127, 127), scale))
            out = builder.emit_output(relax.op.permute_dims(rounded, [0, 2, 1]))
        builder.emit_func_output(out)
    before = relax.transform.Normalize()(builder.get())
    after = relax.transform.DeadCodeElimination()(SinkPermutes()(before))
    assert "relax.permute_dims" not in _ops(after["main"])

    values = np.random.default_rng(1).standard_normal((2, 9, 6)).astype(np.float32)
    outputs = [relax.VirtualMachine(tvm.compile(mod, Target(HOST)), tvm.cpu())["main"](
        tvm.runtime.tensor(values)).numpy() for mod in (before, after)]
    np.testing.assert_array_equal(*outputs)
    assert outputs[0].shape == (2, 12, 6)
