"""int8 kernels: the dot instruction of each ISA in the assembly, exact integer sums, the
per-row input rounding kernel bit for bit, the Int8Matmul and Int8Conv2d passes on synthetic
per-channel int8 weights, and a compressed (.tac) model compiled to int8 kernels matching its
PyTorch reference runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from tvm import relax, tirx
from tvm.target import Target

from tinyasr.compile.kernels.fp32 import vector_unit
from tinyasr.compile.kernels.int8 import (
    AVX2,
    GENERIC,
    RVV,
    SDOT,
    VNNI,
    dot_isa,
    int8_matmul_kernel,
    int8_matmul_tunable,
    int8_tiles,
    pack_weights,
)
from tinyasr.compile.kernels.int8_amx import (
    TileLayout,
    amx_int8_matmul_kernel,
    amx_points,
    configuration_words,
    has_amx,
)
from tinyasr.compile.kernels.quantize import quantize_rows_kernel
from tinyasr.compile.kernels.tunable import KernelChoices, Tunable
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build
from tinyasr.compile.schedule_database import read_kernel_records
from tinyasr.model.compression.quantize import quantizable_layers
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.compressed import load_compressed, write_compressed
from tinyasr.model.network.int8 import Activations, Quantization
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.schedules.kernel_search import search_kernels
from tinyasr.schedules.measure import local_measurement
from tinyasr.scripts.cli import main
from tinyasr.targets.boards import BOARDS, host_target, machine_cpu_flags
from tinyasr.targets.host.runner import CompiledModelRunner

N, K = 144, 64   # output channels, input features: every ISA's lanes and groups divide them
X86_VNNI = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "cascadelake"}


def _has_vnni(target: dict) -> bool:
    with Target(target):
        return tvm.target.codegen.target_has_features("avx512vnni")


@pytest.mark.parametrize("target, isa, instruction", [
    (X86_VNNI, VNNI, "vpdpbusd"),
    (BOARDS["rpi5"].llvm_target, SDOT, "sdot"),
    (BOARDS["k230"].llvm_target, RVV, "vwmacc"),
    (BOARDS["x86-64-v3"].llvm_target, AVX2, "vpmaddwd"),
])
def test_kernel_uses_the_dot_instruction(target: dict, isa, instruction: str):
    assert dot_isa(Target(target)) is isa
    kernel = int8_matmul_kernel(isa, N, K).with_attr("global_symbol", "kernel")
    assembly = tvm.compile(tvm.IRModule({"kernel": kernel}), Target(target)).mod.inspect_source(
        "asm")
    assert instruction in assembly


def test_boards_without_a_dot_isa_get_the_generic_kernel():
    assert dot_isa(Target(BOARDS["rpi4"].llvm_target)) is GENERIC
    assert dot_isa(Target(BOARDS["visionfive2"].llvm_target)) is GENERIC


@pytest.mark.parametrize("isa", [VNNI, AVX2, GENERIC])
@pytest.mark.parametrize("n", [N, 31])   # 31: a last partial block of lanes (output layers)
@pytest.mark.parametrize("point", [0, 1, -1])   # the template's default, another tile, the least
def test_kernel_sums_exactly_on_the_host(isa, n, point):
    target = host_target()
    if isa is VNNI and not _has_vnni(target):
        pytest.skip("this host has no AVX-512 VNNI")
    with Target(target):
        if isa is AVX2 and not tvm.target.codegen.target_has_features("avx2"):
            pytest.skip("this host has no AVX2")
    rng = np.random.default_rng(0)
    rows = 37
    xq = rng.integers(-127, 128, (rows, K), dtype=np.int8)
    wq = rng.integers(-127, 128, (n, K), dtype=np.int8)
    x_scale = rng.random((rows, 1), dtype=np.float32)
    w_scale = rng.random(n, dtype=np.float32)
    params = int8_tiles(isa, n, K)[point]
    kernel = int8_matmul_kernel(isa, n, K, params).with_attr("global_symbol", "kernel")
    library = tvm.compile(tvm.IRModule({"kernel": kernel}), Target(target)).mod
    out = tvm.runtime.tensor(np.zeros((rows, n), np.float32))
    bias = rng.standard_normal(n).astype(np.float32)
    library["kernel"](*(tvm.runtime.tensor(a) for a in
                        [xq, pack_weights(isa, wq), x_scale, w_scale, bias, np.float32(0)]), out)
    exact = (xq.astype(np.int64) @ wq.T.astype(np.int64)).astype(np.float32)
    np.testing.assert_allclose(out.numpy(), np.maximum(exact * x_scale * w_scale + bias, 0),
                               rtol=1e-6, atol=1e-6)   # with a fused bias + ReLU epilogue


def _linear_on_int8_weights() -> tvm.IRModule:
    """main(x (rows, K)) = x @ dequantize(wq (N, K), scale (N,), axis 0).T, torch's export shape."""
    rows = tirx.Var("rows", "int64")
    x = relax.Var("x", relax.TensorType([rows, K], "float32"))
    wq = relax.Var("wq", relax.TensorType([N, K], "int8"))
    scale = relax.Var("scale", relax.TensorType([N], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x, wq, scale], attrs={"num_input": 1}):
        with builder.dataflow():
            weight = builder.emit(relax.op.dequantize(wq, scale, relax.const(0, "int8"), axis=0))
            transposed = builder.emit(relax.op.permute_dims(weight, [1, 0]))
            out = builder.emit_output(relax.op.matmul(x, transposed))
        builder.emit_func_output(out)
    return builder.get()


@pytest.mark.parametrize("k", [144, 36, 8, 20])
def test_quantize_rows_kernel_is_the_reference_rounding_bit_for_bit(k: int):
    """Rows of whole vectors (144), an overlapping last one (36, 20), narrow vectors (8); an
    all-zero row and a row of ties: the same integers and scales as the Relax ops the
    reference's rounding imports as, legalized by TVM."""
    target = Target(host_target())
    kernel = quantize_rows_kernel(vector_unit(target), k).with_attr("global_symbol", "main")
    library = tvm.compile(tvm.IRModule({"main": kernel}), target).mod
    x = relax.Var("x", relax.TensorType([tirx.Var("rows", "int64"), k], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x]):
        peak = relax.op.max(relax.op.abs(x), axis=[1], keepdims=True)
        scale = builder.emit(relax.op.divide(relax.op.clip(peak, 1e-12, float("inf")),
                                             relax.const(127.0)))
        integers = builder.emit(relax.op.astype(
            relax.op.clip(relax.op.round(relax.op.divide(x, scale)), -127, 127), "int8"))
        builder.emit_func_output(relax.Tuple([integers, scale]))
    reference = relax.VirtualMachine(tvm.compile(builder.get(), target), tvm.cpu())["main"]
    rng = np.random.default_rng(k)
    values = (rng.standard_normal((50, k)) * rng.uniform(0.01, 100, (50, 1))).astype(np.float32)
    values[3] = 0                                        # an all-zero row
    values[5] = np.r_[127, np.arange(k - 1) + 0.5]       # scale 1: every other value a tie
    outputs = [tvm.runtime.empty((50, k), "int8"), tvm.runtime.empty((50, 1), "float32")]
    library["main"](tvm.runtime.tensor(values), *outputs)
    for got, expected in zip(outputs, reference(tvm.runtime.tensor(values)), strict=True):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_pass_turns_an_int8_linear_into_the_kernel(tmp_path):
    rng = np.random.default_rng(1)
    wq = rng.integers(-127, 128, (N, K), dtype=np.int8)
    scale = (rng.random(N, dtype=np.float32) + 0.5) / 127
    imported = ImportedModel(_linear_on_int8_weights(),
                             {"main": [tvm.runtime.tensor(wq), tvm.runtime.tensor(scale)]})
    target = host_target()
    built = build(imported, target, IRDumper(tmp_path))
    isa = dot_isa(Target(target))
    lowered = next(tmp_path.glob("*-lower.py")).read_text()
    assert f"int8_matmul_{isa.name.replace('-', '_')}_{N}x{K}" in lowered
    stored = {w.dtype: w.shape for w in built.weights.values()}
    assert stored == {"int8": tuple(isa.packed_shape(N, K)), "float32": (N,)}  # no fp32 copy

    x = rng.standard_normal((23, K)).astype(np.float32)
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x), *(built.weights[k] for k in
                                                built.signatures["main"].weights)).numpy()
    x_scale = np.abs(x).max(axis=1, keepdims=True) / 127
    xq = np.clip(np.round(x / x_scale), -127, 127)
    np.testing.assert_allclose(out, (xq @ wq.T.astype(np.float32)) * x_scale * scale,
                               rtol=1e-5, atol=1e-5)
    dense = x @ (wq.astype(np.float32) * scale[:, None]).T
    assert np.abs(out - dense).max() < 0.02 * np.abs(dense).max()  # int8 rounding of x only


@pytest.fixture(scope="module")
def compressed_model(tmp_path_factory: pytest.TempPathFactory, tiny_random_model) -> Path:
    """The tiny random model written as a .tac with int8 weights and dynamic activations."""
    model, tokenizer = tiny_random_model
    path = tmp_path_factory.mktemp("tac") / "tiny.tac"
    write_compressed(path, model, tokenizer, quantization=Quantization(
        Activations.DYNAMIC, list(quantizable_layers(model))))
    return path


def test_compressed_model_compiles_to_int8_kernels(compressed_model: Path, tmp_path: Path):
    out, dumps = tmp_path / "deploy", tmp_path / "ir"
    assert main(["compile", str(compressed_model), "--target", "host", "--out", str(out),
                 "--dump-ir", str(dumps)]) == 0
    assert "int8_matmul_" in next(dumps.glob("*-lower.py")).read_text()
    # every rounding of the reference's is done once: a per-row one (a linear layer's input) by
    # the quantize_rows kernel, from the unrounded input; a per-tensor one as it is
    imported, quantized = (next(dumps.glob(f"*-{phase}.py")).read_text()
                           for phase in ("import", "quantize"))
    per_row = quantized.count("R.call_tir(cls.quantize_rows_")
    assert per_row > 0 and quantized.count("R.round(") + per_row == imported.count("R.round(")
    weights = tvm.runtime.load_param_dict_from_file(str(out / "weights.bin"))
    assert sum(w.dtype == "int8" for w in weights.values()) >= 8   # the linear layers' values

    reference, _ = load_compressed(compressed_model)
    runner = CompiledModelRunner(out)
    for utterance in read_data_dir(SAMPLES_DIR)[:2]:
        samples = load_wav(utterance.wav)
        log_probs, _ = runner.ctc_log_probs(samples)
        with torch.no_grad():
            expected, _ = reference.ctc_log_probs(torch.from_numpy(samples)[None])
        # integer sums are exact; an activation exactly between two int8 steps may round apart
        assert np.abs(log_probs - expected[0].numpy()).max() < 2e-2


@pytest.mark.slow   # two compiles and scalar tile emulation: 45 s
def test_a_model_on_emulated_tile_kernels_computes_what_it_does_on_vnni(
        compressed_model: Path, tmp_path: Path, monkeypatch):
    """The int8 model compiled as on an AMX host whose tuning chose tile kernels everywhere
    (emulated, so they run here): the packed weights, fused bias and ReLU and rows the passes
    hand them give the VNNI deployable's log-probs."""
    if dot_isa(Target(host_target())) is not VNNI:
        pytest.skip("this host has no AVX-512 VNNI: the tile kernels replace VNNI ones")
    import tinyasr.compile.kernels.int8_amx as int8_amx
    import tinyasr.compile.passes.int8_matmul as int8_matmul

    vnni, tiles = tmp_path / "vnni", tmp_path / "tiles"
    assert main(["compile", str(compressed_model), "--target", "host", "--out", str(vnni),
                 "--untuned"]) == 0
    kernel = int8_amx.amx_int8_matmul_kernel
    monkeypatch.setattr(int8_amx, "amx_int8_matmul_kernel",
                        lambda n, k, params: kernel(n, k, params, emulated=True))
    monkeypatch.setattr(int8_matmul, "has_amx", lambda target: True)
    monkeypatch.setattr(KernelChoices, "choose", lambda self, tunable: next(
        (p for p in tunable.space if p.get("amx")), tunable.default))
    assert main(["compile", str(compressed_model), "--target", "host", "--out", str(tiles),
                 "--untuned", "--dump-ir", str(tmp_path / "ir")]) == 0
    lowered = next((tmp_path / "ir").glob("*-lower.py")).read_text()
    assert "int8_matmul_" in lowered and "tile load past the activations" in lowered   # emulated
    for utterance in read_data_dir(SAMPLES_DIR)[:2]:
        samples = load_wav(utterance.wav)
        expected, _ = CompiledModelRunner(vnni).ctc_log_probs(samples)
        got, _ = CompiledModelRunner(tiles).ctc_log_probs(samples)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _conv_on_int8_weights(channels: int, out_channels: int) -> tvm.IRModule:
    """main(x (1, C, H, 9)) = conv2d(x rounded to int8 per tensor, float(wq) * scale), 3x3 with
    stride 2: the subsampling conv of an int8 .tac as torch exports it (Int8Conv2d)."""
    height = tirx.Var("height", "int64")
    x = relax.Var("x", relax.TensorType([1, channels, height, 9], "float32"))
    wq = relax.Var("wq", relax.TensorType([out_channels, channels, 3, 3], "int8"))
    scale = relax.Var("scale", relax.TensorType([out_channels], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x, wq, scale], attrs={"num_input": 1}):
        with builder.dataflow():
            step = builder.emit(relax.op.divide(relax.op.max(relax.op.abs(x)),
                                                relax.const(127.0)))
            integers = builder.emit(relax.op.clip(relax.op.round(relax.op.divide(x, step)),
                                                  -127, 127))
            rounded = builder.emit(relax.op.multiply(integers, step))
            values = builder.emit(relax.op.astype(wq, "float32"))
            scales = builder.emit(relax.op.reshape(scale, [out_channels, 1, 1, 1]))
            weight = builder.emit(relax.op.multiply(values, scales))
            out = builder.emit_output(relax.op.nn.conv2d(rounded, weight, strides=[2, 2]))
        builder.emit_func_output(out)
    return builder.get()


def test_pass_turns_an_int8_conv_into_im2col_and_the_kernel(tmp_path):
    channels, out_channels = 16, 32
    rng = np.random.default_rng(2)
    wq = rng.integers(-127, 128, (out_channels, channels, 3, 3), dtype=np.int8)
    scale = (rng.random(out_channels, dtype=np.float32) + 0.5) / 127
    imported = ImportedModel(_conv_on_int8_weights(channels, out_channels),
                             {"main": [tvm.runtime.tensor(wq), tvm.runtime.tensor(scale)]})
    built = build(imported, host_target(), IRDumper(tmp_path))
    isa = dot_isa(Target(host_target()))
    lowered = next(tmp_path.glob("*-lower.py")).read_text()
    assert f"int8_matmul_{isa.name.replace('-', '_')}_{out_channels}x{channels * 9}" in lowered
    assert "conv2d" not in lowered

    x = rng.standard_normal((1, channels, 21, 9)).astype(np.float32)
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x), *(built.weights[k] for k in
                                                built.signatures["main"].weights)).numpy()
    step = np.abs(x).max() / 127
    xq = np.clip(np.round(x / step), -127, 127)
    exact = torch.nn.functional.conv2d(torch.from_numpy(xq).double(),
                                       torch.from_numpy(wq.astype(np.float64)), stride=2).numpy()
    np.testing.assert_allclose(out, exact * step * scale.reshape(1, -1, 1, 1),
                               rtol=1e-5, atol=1e-5)


def test_pass_turns_an_int8_conv1d_into_rounded_columns_and_the_kernel(tmp_path):
    """Whisper's second front convolution as `compile --int8` exports it (Int8Conv1d: stride
    2, padding 1, a bias) becomes im2col, the per-row rounding of each output frame's
    3 x C inputs and the int8 kernel, and computes that rounding's exact products."""
    from tinyasr.compile.compressed_import import Int8Conv1d
    from tinyasr.compile.pipeline import import_program

    channels, out_channels, width = 24, 32, 20
    rng = np.random.default_rng(4)
    wq = rng.integers(-127, 128, (out_channels, channels, 3), dtype=np.int8)
    scale = (rng.random(out_channels, dtype=np.float32) + 0.5) / 127
    conv = torch.nn.Conv1d(channels, out_channels, 3, stride=2, padding=1)
    module = Int8Conv1d(torch.from_numpy(wq), torch.from_numpy(scale), conv).eval()
    x = rng.standard_normal((1, channels, width)).astype(np.float32)
    program = torch.export.export(module, (torch.from_numpy(x),))
    mod, params = relax.frontend.detach_params(import_program(program))
    built = build(ImportedModel(mod, {"main": params.get("main", [])}), host_target(),
                  IRDumper(tmp_path))
    isa = dot_isa(Target(host_target()))
    lowered = next(tmp_path.glob("*-lower.py")).read_text()
    assert f"int8_matmul_{isa.name.replace('-', '_')}_{out_channels}x{channels * 3}" in lowered
    assert "conv1d" not in lowered

    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x), *(built.weights[k] for k in
                                                built.signatures["main"].weights))[0].numpy()
    padded = np.pad(x[0], ((0, 0), (1, 1)))
    frames = (width - 1) // 2 + 1
    columns = np.stack([padded[:, 2 * t:2 * t + 3].T.reshape(-1) for t in range(frames)])
    step = np.maximum(np.abs(columns).max(1, keepdims=True), 1e-12) / 127
    xq = np.clip(np.round(columns / step), -127, 127)
    weights = wq.transpose(0, 2, 1).reshape(out_channels, -1).astype(np.float64)
    bias = conv.bias.detach().numpy()
    expected = (xq @ weights.T) * step * scale + bias
    np.testing.assert_allclose(out[0], expected.T, rtol=1e-5, atol=1e-5)


# AMX tiles (compile/kernels/int8_amx.py): built here, run only where the CPU has them.

SAPPHIRE_RAPIDS = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "sapphirerapids"}
TILE_INSTRUCTIONS = ("ldtilecfg", "tileloadd", "tdpbssd", "tilestored", "tilerelease")


def _machine_has_amx() -> bool:
    return {"amx_tile", "amx_int8"} <= (machine_cpu_flags() or set())


def test_amx_tiles_join_the_int8_space_only_on_amx_targets():
    """On a target with AMX int8 only, and right after the default (unchanged), so that
    tune times them within a small --trials."""
    assert has_amx(Target(SAPPHIRE_RAPIDS))
    assert not has_amx(Target(X86_VNNI))
    assert not has_amx(Target({**X86_VNNI, "mcpu": "znver5"}))
    plain, tiled = int8_matmul_tunable(VNNI, 384, 384), int8_matmul_tunable(VNNI, 384, 384, True)
    assert tiled.name == plain.name and tiled.default == plain.default
    tiles = [{"amx": 1, "rows": rows, "blocks": blocks}
             for rows, blocks in [(2, 2), (1, 2), (2, 1), (1, 1)]]
    assert list(tiled.space) == [plain.default, *tiles, *plain.space[1:]]   # right after it
    # 9 blocks: one at a time; k = 144 leaves 16 bytes, whose A and B tiles leave no room for 2 x 2
    assert [p for p in int8_matmul_tunable(VNNI, 144, 144, True).space if "amx" in p] == [
        tiles[2], tiles[3]]
    assert [p for p in int8_matmul_tunable(VNNI, 32, 144, True).space if "amx" in p] == tiles[1:]
    assert int8_matmul_tunable(AVX2, 384, 384, True).space == int8_matmul_tunable(
        AVX2, 384, 384).space                           # AMX packs as VNNI does


# the AMX Xeon VM's host target: LLVM named its cpu rocketlake, host_target adds the tiles
AMX_VM_HOST = {**SAPPHIRE_RAPIDS, "mcpu": "rocketlake", "mattr": ["+amx-tile", "+amx-int8"]}


@pytest.mark.parametrize("target", [SAPPHIRE_RAPIDS, AMX_VM_HOST], ids=["spr", "vm-host"])
@pytest.mark.parametrize("n, k", [(384, 384), (31, 144), (1536, 384)])
def test_amx_kernels_build_into_tile_instructions(n: int, k: int, target: dict):
    """Whole 64-byte chunks of k (384) and a narrower last one (144), a last partial block
    of columns (31); the kernel asks Linux for the tile registers (arch_prctl via syscall).
    For Sapphire Rapids, and for the AMX Xeon VM's host target (rocketlake plus the tiles)."""
    for params in amx_points(n, k):
        tunable = int8_matmul_tunable(VNNI, n, k, amx=True)
        kernel = tunable.make(params).with_attr("global_symbol", "kernel")
        assembly = tvm.compile(tvm.IRModule({"kernel": kernel}),
                               Target(target)).mod.inspect_source("asm")
        assert all(instruction in assembly for instruction in TILE_INSTRUCTIONS), params
        assert "syscall" in assembly and "vpdpbusd" not in assembly


def test_amx_tile_configuration_bytes():
    """Palette 1; per tile its bytes per row and rows: C and A get the call's rows (a
    multiplier), the weights' B tiles 16 rows (k's last 16 bytes: 4)."""
    def fields(layout: TileLayout) -> tuple[list[int], list[int], list[int], bytes]:
        words, multipliers = configuration_words(layout)
        config = b"".join(word.to_bytes(8, "little") for word in words)
        rows = b"".join(word.to_bytes(8, "little") for word in multipliers)
        assert config[0] == 1 and not any(config[1:16]) and not any(config[56:])
        row_bytes = [int.from_bytes(config[16 + 2 * t:18 + 2 * t], "little") for t in range(8)]
        return row_bytes, list(config[48:56]), list(rows[48:56]), config

    # 1 x 2 and k's last 16 bytes: C0 C1 | A | B0 B1 | A' | B0' B1'
    assert fields(TileLayout(1, 2, 16))[:3] == (
        [64, 64, 64, 64, 64, 16, 64, 64], [0, 0, 0, 16, 16, 0, 4, 4], [1, 1, 1, 0, 0, 1, 0, 0])
    # 2 x 2: C00 C01 C10 C11 | A0 A1 | B0 B1
    assert fields(TileLayout(2, 2, 0))[:3] == (
        [64] * 8, [0, 0, 0, 0, 0, 0, 16, 16], [1, 1, 1, 1, 1, 1, 0, 0])
    # 1 x 1: C0 | A | B0, the others unused
    assert fields(TileLayout(1, 1, 0))[0] == [64, 64, 64, 0, 0, 0, 0, 0]


def test_the_int8_pass_builds_amx_kernels_when_chosen(tmp_path, monkeypatch):
    """A layer compiled for an AMX target with its tile kernel chosen (as a device's timings
    would): the lowered module calls it and the code has tile instructions."""
    monkeypatch.setattr(KernelChoices, "choose", lambda self, tunable: next(
        (p for p in tunable.space if p.get("amx")), tunable.default))
    rng = np.random.default_rng(5)
    wq = rng.integers(-127, 128, (N, K), dtype=np.int8)
    scale = (rng.random(N, dtype=np.float32) + 0.5) / 127
    imported = ImportedModel(_linear_on_int8_weights(),
                             {"main": [tvm.runtime.tensor(wq), tvm.runtime.tensor(scale)]})
    built = build(imported, SAPPHIRE_RAPIDS, IRDumper(tmp_path))
    assert "tilezero" in next(tmp_path.glob("*-lower.py")).read_text()
    assembly = "".join(module.inspect_source("asm") for module in built.executable.mod.imports)
    assert all(instruction in assembly for instruction in TILE_INSTRUCTIONS)


@pytest.mark.parametrize("emulated", [
    True, pytest.param(False, marks=pytest.mark.skipif(not _machine_has_amx(),
                                                       reason="this CPU has no AMX tiles"))])
@pytest.mark.parametrize("n, k", [(384, 384), (31, 144), (48, 16)])
def test_amx_kernel_sums_exactly(n: int, k: int, emulated: bool):
    """Tile kernels against the exact product with a fused bias + ReLU, for fewer rows than a
    tile, a whole tile, a last partial one, and two-tile steps with a single tile after them;
    whole 64-byte chunks of k, a narrower last one, only a narrow one. Emulated (the tile
    operations in plain TIR with the hardware's shape rules asserted: the configurations,
    addressing and tails) on any CPU; on the tiles themselves where the CPU has them."""
    target = Target(host_target() if emulated else {**host_target(),
                                                    "mattr": ["+amx-tile", "+amx-int8"]})
    for params in amx_points(n, k):
        kernel = amx_int8_matmul_kernel(n, k, params, emulated).with_attr("global_symbol",
                                                                          "kernel")
        library = tvm.compile(tvm.IRModule({"kernel": kernel}), target).mod
        for rows in (1, 15, 16, 37, 48):
            rng = np.random.default_rng(rows)
            xq = rng.integers(-127, 128, (rows, k), dtype=np.int8)
            wq = rng.integers(-127, 128, (n, k), dtype=np.int8)
            x_scale = rng.random((rows, 1), dtype=np.float32)
            w_scale = rng.random(n, dtype=np.float32)
            bias = rng.standard_normal(n).astype(np.float32)
            out = tvm.runtime.tensor(np.zeros((rows, n), np.float32))
            library["kernel"](*(tvm.runtime.tensor(a) for a in
                                [xq, pack_weights(VNNI, wq), x_scale, w_scale, bias,
                                 np.float32(0)]), out)
            exact = (xq.astype(np.int64) @ wq.T.astype(np.int64)).astype(np.float32)
            np.testing.assert_allclose(out.numpy(),
                                       np.maximum(exact * x_scale * w_scale + bias, 0),
                                       rtol=1e-6, atol=1e-6, err_msg=f"{params}, {rows} rows")


def test_kernel_search_checks_the_tile_points_against_the_vnni_default(tmp_path):
    """The tuner runs each point once beside the default and records one that computes
    otherwise as an error: the tile kernels (emulated here, the real ones on an AMX host)
    pass that check against the VNNI default, so it leaves them to the timing."""
    n, k = 48, 144
    vnni = int8_matmul_tunable(VNNI, n, k, amx=True)
    tunable = Tunable(vnni.name, lambda params: amx_int8_matmul_kernel(
        n, k, params, emulated=True) if params.get("amx") else vnni.make(params),
        vnni.space[:3])
    assert [bool(params.get("amx")) for params in tunable.space] == [False, True, True]
    search_kernels([tunable], tmp_path, Target(host_target()), 3, local_measurement(),
                   lambda line: None)
    records = read_kernel_records(tmp_path)
    assert [r.params for r in records] == list(tunable.space)
    assert all(r.us is not None and r.error is None for r in records), records


def test_the_emulated_tiles_refuse_a_wrong_configuration(monkeypatch):
    """The emulation checks what the hardware would fault on: a weight tile configured with
    16 rows where k leaves 4 reads past the packed weights."""
    import tinyasr.compile.kernels.int8_amx as int8_amx

    def wrong(layout: TileLayout) -> tuple[list[int], list[int]]:
        words, multipliers = configuration_words(layout)
        words[6] += 12 << 48          # tile 6 (the last k's weights): 4 -> 16 rows
        return words, multipliers

    monkeypatch.setattr(int8_amx, "configuration_words", wrong)
    n, k, rows = 32, 144, 20
    kernel = amx_int8_matmul_kernel(n, k, {"amx": 1, "rows": 1, "blocks": 2},
                                    emulated=True)
    library = tvm.compile(tvm.IRModule({"kernel": kernel.with_attr("global_symbol", "kernel")}),
                          Target(host_target())).mod
    inputs = [np.zeros((rows, k), np.int8), pack_weights(VNNI, np.zeros((n, k), np.int8)),
              np.ones((rows, 1), np.float32), np.ones(n, np.float32), np.zeros(n, np.float32),
              np.float32(0), np.zeros((rows, n), np.float32)]
    with pytest.raises(RuntimeError, match="tile load past the weights"):
        library["kernel"](*(tvm.runtime.tensor(a) for a in inputs))
