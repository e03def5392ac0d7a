"""BSR kernels: exact sums against numpy for several block shapes, vector multiply-adds on x86,
NEON and RVV; a pruned .tac model compiled with fp32 and int8 BSR kernels (plus a dense
fallback) matching its PyTorch reference runner on real audio, with the BSR arrays in the
weights file instead of dense weights."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from tvm.target import Target

from tinyasr.compile.kernels.bsr import EXACT_FP32_SUM, bsr_matmul_kernel
from tinyasr.compile.kernels.int8 import AVX2
from tinyasr.compile.passes.bsr_matmul import max_density
from tinyasr.model.compression.prune import Pruner
from tinyasr.model.compression.quantize import quantizable_layers
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.decoding.prefix_tree import prefix_tree
from tinyasr.model.network.compressed import (
    load_compressed,
    read_compressed,
    to_bsr,
    write_compressed,
)
from tinyasr.model.network.int8 import Activations, Quantization
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.model.network.sparsity import BlockShape, prunable_layers
from tinyasr.scripts.cli import main
from tinyasr.targets.boards import BOARDS, host_target
from tinyasr.targets.host.runner import CompiledModelRunner

BLOCK = BlockShape(4, 1)
SPARSITY = 0.9                              # density 0.1: sparse kernels, fp32 and int8
FALLBACK_LAYER = "encoder.blocks.0.ffn.0"   # pruned to 0.75: stored as BSR, compiled dense
# x86-64-v3 (AVX2), where int8 BSR kernels win below 0.6 density (on AVX-512 VNNI they never
# do); its code runs on any x86-64 host of the last decade
TARGET = "x86-64-v3"
FP32_LAYERS = "decoder."                    # left fp32 (BSR fp32 kernels), the rest int8


def _values(rng: np.random.Generator, shape: tuple[int, int], int8: bool,
            extreme: bool) -> np.ndarray:
    if not int8:
        return rng.standard_normal(shape).astype(np.float32)
    return np.full(shape, 127, np.int8) if extreme else rng.integers(-127, 128, shape, np.int8)


@pytest.mark.parametrize("n, k, block, density, int8", [
    (48, 40, (4, 1), 0.3, False),
    (48, 40, (1, 4), 0.3, True),
    (48, 40, (2, 2), 0.3, True),
    (4, 2 * EXACT_FP32_SUM, (4, 1), 1.0, True),   # sums past fp32's exact range: int32
])
def test_kernel_sums_exactly(n: int, k: int, block: tuple[int, int], density: float,
                             int8: bool):
    rng = np.random.default_rng(0)
    rows = 37                                     # two full frame tiles and a partial one
    extreme = k > EXACT_FP32_SUM
    keep = rng.random((n // block[0], k // block[1])) < density
    mask = np.repeat(np.repeat(keep, block[0], 0), block[1], 1)
    weight = _values(rng, (n, k), int8, extreme) * mask.astype(np.int8 if int8 else np.float32)
    x = _values(rng, (rows, k), int8, extreme)
    bsr = to_bsr(weight, BlockShape(*block))
    indices = bsr["col_indices"].astype(np.int32)
    kernel = bsr_matmul_kernel(n, k, block, len(bsr["values"]), "int32", int8)
    library = tvm.compile(tvm.IRModule({"kernel": kernel.with_attr("global_symbol", "kernel")}),
                          Target(host_target())).mod
    scales = [rng.random((rows, 1), dtype=np.float32), rng.random(n, dtype=np.float32)]
    out = tvm.runtime.tensor(np.zeros((rows, n), np.float32))
    library["kernel"](*(tvm.runtime.tensor(a) for a in
                        [x, bsr["values"], indices, bsr["row_pointers"],
                         *(scales if int8 else [])]), out)
    if int8:
        exact = (x.astype(np.int64) @ weight.T.astype(np.int64)).astype(np.float32)
        np.testing.assert_allclose(out.numpy(), exact * scales[0] * scales[1], rtol=1e-6)
    else:
        np.testing.assert_allclose(out.numpy(), x @ weight.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target, instruction", [
    ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "cascadelake"}, "vfmadd231ps"),
    (BOARDS["rpi4"].llvm_target, "fmla"),
    (BOARDS["k230"].llvm_target, "vfmacc.vf"),
])
def test_kernel_uses_vector_multiply_adds(target: dict, instruction: str):
    kernel = bsr_matmul_kernel(64, 32, (4, 1), 40, "uint8", True)
    library = tvm.compile(tvm.IRModule({"kernel": kernel.with_attr("global_symbol", "kernel")}),
                          Target(target))
    assert instruction in library.mod.inspect_source("asm")


@pytest.fixture(scope="module")
def pruned_model(tmp_path_factory: pytest.TempPathFactory, tiny_random_model) -> Path:
    """The tiny random model pruned in 4x1 blocks and written as a .tac: decoder layers fp32,
    the rest int8 with dynamic activations."""
    model, tokenizer = tiny_random_model
    model = copy.deepcopy(model)
    layers = [name for name, layer in prunable_layers(model, BLOCK).items()
              if isinstance(layer, torch.nn.Linear)]
    pruner = Pruner(model, BLOCK, {name: 0.25 if name == FALLBACK_LAYER else SPARSITY
                                   for name in layers})
    pruner.prune_to(1.0)
    pruner.finish()
    int8 = [name for name in quantizable_layers(model) if not name.startswith(FP32_LAYERS)]
    path = tmp_path_factory.mktemp("tac") / "pruned.tac"
    write_compressed(path, model, tokenizer, BLOCK, Quantization(Activations.DYNAMIC, int8))
    return path


@pytest.fixture(scope="module")
def compiled(pruned_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bsr")
    assert main(["compile", str(pruned_model), "--target", TARGET, "--out", str(out / "deploy"),
                 "--dump-ir", str(out / "ir")]) == 0
    return out


def test_pruned_model_compiles_to_bsr_kernels(compiled: Path):
    lowered = next((compiled / "ir").glob("*-lower.py")).read_text()
    assert "bsr_matmul_int8_96x32_4x1" in lowered      # encoder qkv, int8
    assert "bsr_matmul_fp32_96x32_4x1" in lowered      # decoder qkv, fp32
    assert "int8_matmul_" in lowered                   # the dense fallback layer
    assert "tinyasr.bsr_to_dense" not in lowered       # densifying is done at compile time


def test_weights_file_holds_the_bsr_arrays(compiled: Path, pruned_model: Path):
    weights = tvm.runtime.load_param_dict_from_file(str(compiled / "deploy" / "weights.bin"))
    compressed = read_compressed(pruned_model)
    sparse = {name.removesuffix(".weight"): entry for name, entry in
              compressed.header["tensors"].items() if entry["layout"] == "bsr"
              and not name.startswith("encoder.subsampling.conv")}
    assert FALLBACK_LAYER in sparse and len(sparse) >= 10
    for layer, entry in sparse.items():
        key = "encode" if layer.startswith("encoder.") else "decode"
        stored = {part: weights.get(f"{key}/p_{layer.replace('.', '_')}_{part}")
                  for part in ("values", "col_indices", "row_pointers")}
        if layer == FALLBACK_LAYER:
            assert all(array is None for array in stored.values())   # densified at compile time
            continue
        dense_bytes = np.prod(entry["shape"]) * (1 if entry["encoding"] == "int8" else 4)
        assert sum(array.numpy().nbytes for array in stored.values()) < dense_bytes / 2, layer
        assert str(stored["values"].dtype) == ("int8" if entry["encoding"] == "int8"
                                               else "float32")


def test_dense_fallback_above_the_threshold(pruned_model: Path):
    entry = read_compressed(pruned_model).header["tensors"][f"{FALLBACK_LAYER}.weight"]
    values = read_compressed(pruned_model).parts[f"{FALLBACK_LAYER}.weight"]["values"]
    density = values.size / np.prod(entry["shape"])
    assert entry["layout"] == "bsr" and density > max_density(entry["encoding"], AVX2)


def test_compiled_bsr_model_matches_the_reference(compiled: Path, pruned_model: Path):
    reference, _ = load_compressed(pruned_model)
    runner = CompiledModelRunner(compiled / "deploy")
    for utterance in read_data_dir(SAMPLES_DIR)[:2]:
        samples = load_wav(utterance.wav)
        log_probs, encoded = runner.ctc_log_probs(samples)
        with torch.no_grad():
            expected, expected_encoded = reference.ctc_log_probs(torch.from_numpy(samples)[None])
        # integer sums are exact; an activation exactly between two int8 steps may round apart
        assert np.abs(log_probs - expected[0].numpy()).max() < 2e-2
        tree = prefix_tree([(3, 5), (3, 4)], reference.sos_eos, reference.config.fsmn_kernel)
        decoded = runner.tree_log_probs(tree, encoded)
        with torch.no_grad():
            expected_decoded = reference.decoder.tree_forward(
                *map(torch.from_numpy, tree.arrays()), torch.from_numpy(encoded))
        assert np.abs(decoded - expected_decoded.numpy()).max() < 2e-2
