"""The fused attention kernel equals numpy's attention for every kind of width, masked or not,
with keys and values per batch or shared; attention as torch exports model/network/san_m.py's
`attend` compiles to that one kernel and computes what torch computes. The int8 attention
kernel computes its numpy reference and stays near float attention; the pass gives it only
long unmasked attentions of models compiled for it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm.target import Target

from tinyasr.compile.kernels.attention import attention_kernel, attention_tiles
from tinyasr.compile.kernels.fp32 import vector_unit
from tinyasr.compile.kernels.int8 import VNNI, dot_isa
from tinyasr.compile.kernels.int8_attention import (
    int8_attention_kernel,
    int8_attention_reference,
    int8_attention_tiles,
)
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build, import_program
from tinyasr.model.network.san_m import attend
from tinyasr.targets.boards import board_target, get_board

HOST = board_target(get_board("host"))
HEADS, HEAD_DIM = 4, 36
X86_VNNI = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "cascadelake"}
INT8_HEADS, INT8_HEAD_DIM = 3, 32


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, keep: np.ndarray | None
               ) -> np.ndarray:
    """numpy's multi-head attention in float64, the kernel's reference (keys and values of
    batch b % G)."""
    batch, rows, dim = q.shape
    out = np.zeros((batch, rows, dim))
    for b in range(batch):
        for head in range(HEADS):
            columns = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
            scores = q[b, :, columns].astype(np.float64) @ k[b % len(k), :, columns].T
            if keep is not None:
                scores = np.where(keep[b], scores, -1e9)
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            out[b, :, columns] = weights / weights.sum(-1, keepdims=True) @ v[b % len(v), :,
                                                                               columns]
    return out


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("point", [0, 5, -1])   # the template's default, other tiles
def test_attention_kernel_equals_numpy(masked: bool, point: int):
    """Key columns of several vectors and an overlapping last one (123, 63), one vector (16),
    narrow vectors (9), scalars (3, 1); query rows in blocks and left over (63, 13, 5, 2);
    keys and values per batch (G = B) and shared (G = 1); masked, a causal mask with one
    batch's later columns cut, and a row with no kept column (equal weights, as in torch);
    at points of the template's space."""
    unit = vector_unit(Target(HOST))
    params = attention_tiles(unit, HEAD_DIM)[point]
    kernel = attention_kernel(unit, HEADS, HEAD_DIM, masked, params).with_attr(
        "global_symbol", "main")
    library = tvm.compile(tvm.IRModule({"main": kernel}), Target(HOST)).mod
    rng = np.random.default_rng(int(masked))
    for batch, groups, rows, n in [(3, 3, 63, 63), (3, 1, 13, 123), (2, 2, 5, 16),
                                   (2, 1, 5, 9), (2, 2, 2, 3), (1, 1, 1, 1)]:
        q = (rng.standard_normal((batch, rows, HEADS * HEAD_DIM)) / 6).astype(np.float32)
        k, v = (rng.standard_normal((groups, n, HEADS * HEAD_DIM)).astype(np.float32)
                for _ in "kv")
        keep = None
        if masked:
            keep = np.tril(np.ones((rows, n), bool), k=max(0, n - rows))[None].repeat(batch, 0)
            keep[-1, :, n // 2 + 1:] = False
            keep[0, -1, :] = False
        out = tvm.runtime.tensor(np.zeros((batch, rows, HEADS * HEAD_DIM), np.float32))
        inputs = [q, k, v] + ([keep] if masked else [])
        library["main"](*(tvm.runtime.tensor(a) for a in inputs), out)
        np.testing.assert_allclose(out.numpy(), _attention(q, k, v, keep), rtol=1e-5,
                                   atol=2e-6)


class _Attention(nn.Module):
    """model/network/san_m.py's attention alone: masked self-attention or shared-memory
    attention."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        return attend(q, k, v, HEADS, keep, nn.Identity())


@pytest.mark.parametrize("masked", [False, True])
def test_attention_as_torch_exports_it_is_one_kernel(masked: bool, tmp_path):
    """The decoder's self-attention (per-hypothesis keys and values, a causal mask) and its
    cross-attention (one utterance's keys and values for every hypothesis): no matmul, softmax
    or head transpose is left, only the kernel, and it computes torch's attention."""
    rng = np.random.default_rng(3)
    hypotheses, steps = 3, 11
    frames = steps if masked else 17
    arrays = [rng.standard_normal((hypotheses, steps, HEADS * HEAD_DIM)).astype(np.float32) / 6]
    arrays += [rng.standard_normal((hypotheses if masked else 1, frames, HEADS * HEAD_DIM))
               .astype(np.float32) for _ in "kv"]
    if masked:
        arrays.append(np.tril(np.ones((steps, steps), bool))[None].repeat(hypotheses, 0))
    inputs = tuple(torch.from_numpy(a) for a in arrays)
    program = torch.export.export(_Attention().eval(), inputs)
    mod, params = tvm.relax.frontend.detach_params(import_program(program))
    built = build(ImportedModel(mod, {"main": params.get("main", [])}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    lanes = vector_unit(Target(HOST)).lanes
    assert f"cls.attention_{lanes}_h{HEADS}x{HEAD_DIM}{'_masked' if masked else ''}, " in dense
    for op in ("R.matmul", "R.nn.softmax", "R.permute_dims", "R.where"):
        assert op not in dense

    vm = tvm.relax.VirtualMachine(built.executable, tvm.cpu())
    got = vm["main"](*(tvm.runtime.tensor(a) for a in arrays))[0].numpy()   # a 1-tuple
    with torch.no_grad():
        expected = _Attention()(*inputs).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _float_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """Unmasked attention in float64 (keys and values of batch b % G)."""
    batch, rows, dim = q.shape
    width = dim // heads
    out = np.zeros((batch, rows, dim))
    for b in range(batch):
        for head in range(heads):
            columns = slice(head * width, (head + 1) * width)
            scores = q[b, :, columns].astype(np.float64) @ k[b % len(k), :, columns].T
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            out[b, :, columns] = weights / weights.sum(-1, keepdims=True) @ v[b % len(v), :,
                                                                               columns]
    return out


@pytest.mark.parametrize("point", [0, 3, -1])   # the template's default, other tiles
def test_int8_attention_kernel_equals_its_reference(point: int):
    """Keys of whole blocks of 16 and not (50, 16, 3, 1), query rows in blocks and left over
    (37, 5, 9, 1), keys and values per batch and shared: the kernel computes its numpy
    reference (within the 16-bit probabilities' last level: the kernel's exponential is a
    float32 polynomial) and stays within 2 % (RMS) of float attention. It runs vpdpbusd, so
    it runs where the host has AVX-512 VNNI; elsewhere it is only compiled."""
    params = int8_attention_tiles(VNNI, INT8_HEAD_DIM)[point]
    kernel = int8_attention_kernel(VNNI, INT8_HEADS, INT8_HEAD_DIM, params).with_attr(
        "global_symbol", "main")
    assembly = tvm.compile(tvm.IRModule({"main": kernel}), Target(X86_VNNI)).mod.inspect_source(
        "asm")
    assert "vpdpbusd" in assembly
    if dot_isa(Target(HOST)) is not VNNI:
        pytest.skip("this host has no AVX-512 VNNI to run it")
    library = tvm.compile(tvm.IRModule({"main": kernel}), Target(HOST)).mod
    rng = np.random.default_rng(abs(point))
    dim = INT8_HEADS * INT8_HEAD_DIM
    for batch, groups, rows, n in [(1, 1, 37, 50), (2, 1, 5, 16), (2, 2, 9, 3), (1, 1, 1, 1)]:
        q = (rng.standard_normal((batch, rows, dim)) / 3).astype(np.float32)
        k, v = (rng.standard_normal((groups, n, dim)).astype(np.float32) for _ in "kv")
        out = tvm.runtime.tensor(np.zeros((batch, rows, dim), np.float32))
        library["main"](*(tvm.runtime.tensor(a) for a in (q, k, v)), out)
        got = out.numpy()
        np.testing.assert_allclose(got, int8_attention_reference(q, k, v, INT8_HEADS),
                                   rtol=1e-4, atol=1e-4)
        exact = _float_attention(q, k, v, INT8_HEADS)
        assert np.sqrt(((got - exact) ** 2).mean() / (exact ** 2).mean()) < 0.02


class _Unmasked(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return attend(q, k, v, INT8_HEADS, None, nn.Identity())


@pytest.mark.parametrize("rows, int8", [(80, True), (80, False), (8, True)])
def test_int8_attention_is_for_long_attention_of_int8_models(rows: int, int8: bool,
                                                             tmp_path):
    """Compiled for int8 attention (ImportedModel.int8_attention) on a VNNI target, an unmasked
    attention of 80 query rows becomes the int8 kernel; without the flag, or over 8 rows
    (fewer than INT8_MIN_ROWS: a decoder step), it stays the fp32 kernel."""
    from tinyasr.compile.passes.fused_attention import INT8_MIN_ROWS

    assert rows >= INT8_MIN_ROWS or rows == 8 < INT8_MIN_ROWS
    dim = INT8_HEADS * INT8_HEAD_DIM
    inputs = tuple(torch.from_numpy(np.random.default_rng(0).standard_normal(
        (1, rows, dim)).astype(np.float32)) for _ in "qkv")
    program = torch.export.export(_Unmasked().eval(), inputs)
    mod, params = tvm.relax.frontend.detach_params(import_program(program))
    build(ImportedModel(mod, {"main": params.get("main", [])}, int8_attention=int8), X86_VNNI,
          IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    int8_kernel = f"cls.int8_attention_avx512_vnni_h{INT8_HEADS}x{INT8_HEAD_DIM}, " in dense
    assert int8_kernel == (int8 and rows >= INT8_MIN_ROWS)
    assert int8_kernel or f"cls.attention_16_h{INT8_HEADS}x{INT8_HEAD_DIM}, " in dense


def test_fused_int8_attention_reads_one_projection_and_folds_the_scale():
    """The fused kernel on qkv = [q | k | v] with the scores scaled by 1/8 computes what the
    three-input kernel computes on (q / 8, k, v): a power of two scales a query row's scale,
    not its integers."""
    params = int8_attention_tiles(VNNI, INT8_HEAD_DIM)[0]
    if dot_isa(Target(HOST)) is not VNNI:
        pytest.skip("this host has no AVX-512 VNNI to run it")
    fused, plain = (tvm.compile(tvm.IRModule({"main": int8_attention_kernel(
        VNNI, INT8_HEADS, INT8_HEAD_DIM, params, scale).with_attr("global_symbol", "main")}),
        Target(HOST)).mod for scale in (0.125, None))
    rng = np.random.default_rng(5)
    dim = INT8_HEADS * INT8_HEAD_DIM
    for batch, rows in [(1, 70), (2, 9)]:
        qkv = (rng.standard_normal((batch, rows, 3 * dim)) * 2).astype(np.float32)
        q, k, v = (np.ascontiguousarray(qkv[..., i * dim:(i + 1) * dim]) for i in range(3))
        outs = [tvm.runtime.tensor(np.zeros((batch, rows, dim), np.float32)) for _ in "ab"]
        fused["main"](tvm.runtime.tensor(qkv), outs[0])
        plain["main"](*(tvm.runtime.tensor(a) for a in (q / 8, k, v)), outs[1])
        np.testing.assert_allclose(outs[0].numpy(), outs[1].numpy(), rtol=1e-5, atol=1e-5)


class _FusedProjection(nn.Module):
    """Whisper's encoder self-attention from its fused projection's output: split into
    thirds, heads, scores scaled after the product (model/whisper/model.py)."""

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        from tinyasr.model.whisper.model import attend as whisper_attend
        from tinyasr.model.whisper.model import split_heads

        q, k, v = qkv.chunk(3, dim=-1)
        return whisper_attend(*(split_heads(x, INT8_HEADS) for x in (q, k, v)))


def test_int8_attention_of_a_fused_projection_is_one_input(tmp_path):
    """Compiled for int8 attention, Whisper's self-attention on its fused projection becomes
    the fused kernel on the projection's output (no split is left) and, on a VNNI host,
    stays within 2 % (RMS) of torch's attention."""
    dim = INT8_HEADS * INT8_HEAD_DIM
    qkv = np.random.default_rng(6).standard_normal((1, 80, 3 * dim)).astype(np.float32)
    program = torch.export.export(_FusedProjection().eval(), (torch.from_numpy(qkv),))
    mod, params = tvm.relax.frontend.detach_params(import_program(program))
    target = HOST if dot_isa(Target(HOST)) is VNNI else X86_VNNI
    built = build(ImportedModel(mod, {"main": params.get("main", [])}, int8_attention=True),
                  target, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert f"int8_attention_avx512_vnni_h{INT8_HEADS}x{INT8_HEAD_DIM}_qkv_s" in dense
    assert "R.split" not in dense
    if target is X86_VNNI:
        pytest.skip("this host has no AVX-512 VNNI to run it")
    vm = tvm.relax.VirtualMachine(built.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(qkv))[0].numpy()
    with torch.no_grad():
        expected = _FusedProjection()(torch.from_numpy(qkv)).numpy()
    assert np.sqrt(((got - expected) ** 2).mean() / (expected ** 2).mean()) < 0.02


def _cached_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, positions: np.ndarray,
                      scale: float) -> np.ndarray:
    """numpy's attention of query rows over a cache, each up to its position, in float64."""
    scores = np.einsum("ame,ane->amn", q.astype(np.float64), k) * scale
    slots = np.arange(k.shape[1])
    scores = np.where(slots[None, None, :] <= positions[None, :, None], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True) @ v


@pytest.mark.parametrize("lanes", [16, 4])
def test_cached_attention_reads_only_the_written_slots_like_numpy(lanes: int):
    """The decoder step's attention over its cache: a step of one row 30 slots in (groups of
    4 keys, the last moved back), near the end of the cache, the prompt's two rows at 0 and 1
    (fewer keys than a group), three rows of a beam. The slots past each row's position hold
    NaN: a kernel that read them would return NaN. fp32 sums against float64: ~3e-7
    measured, 1e-5 allowed."""
    from tinyasr.compile.kernels.cached_attention import cached_attention_kernel
    from tinyasr.compile.kernels.fp32 import VectorUnit

    slots, head_dim, scale = 448, 64, 0.125
    kernel = cached_attention_kernel(VectorUnit(lanes, 32), slots, head_dim, scale)
    library = tvm.compile(tvm.IRModule({"attend": kernel.with_attr("global_symbol", "attend")}),
                          Target(HOST)).mod
    rng = np.random.default_rng(lanes)
    for rows, positions in [(6, [30]), (6, [446]), (6, [0, 1]), (18, [5, 6, 7])]:
        positions = np.array(positions, np.int64)
        q = rng.standard_normal((rows, len(positions), head_dim)).astype(np.float32)
        k, v = (rng.standard_normal((rows, slots, head_dim)).astype(np.float32) for _ in "kv")
        expected = _cached_attention(q, k, v, positions, scale)
        k[:, positions.max() + 1:] = v[:, positions.max() + 1:] = np.nan
        out = tvm.runtime.tensor(np.zeros(q.shape, np.float32))
        library["attend"](*map(tvm.runtime.tensor, (q, k, v, positions)), out)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


class _StepAttention(nn.Module):
    """The self-attention of model/whisper/model.py's decoder step: the new keys and values
    written into the caches at `positions`, every query masked past its position."""

    def forward(self, q, k, v, positions, k_cache, v_cache):
        from tinyasr.model.whisper.model import attend as whisper_attend

        slots = torch.arange(k_cache.shape[2])
        mask = slots[None, :] <= positions[:, None]
        k_cache = k_cache.index_copy(2, positions, k)
        v_cache = v_cache.index_copy(2, positions, v)
        return whisper_attend(q, k_cache, v_cache, mask), k_cache, v_cache


def test_step_attention_over_a_cache_is_one_kernel(tmp_path):
    """The step's attention as torch exports it compiles to the cached-attention kernel (no
    matmul, mask or softmax left) and computes torch's attention and caches."""
    rng = np.random.default_rng(5)
    batch, heads, slots, head_dim = 2, 3, 40, 16
    positions = np.array([6, 7], np.int64)
    arrays = [rng.standard_normal((batch, heads, 2, head_dim)).astype(np.float32)
              for _ in "qkv"]
    arrays += [positions]
    arrays += [rng.standard_normal((batch, heads, slots, head_dim)).astype(np.float32)
               for _ in "kv"]
    inputs = tuple(torch.from_numpy(a) for a in arrays)
    program = torch.export.export(_StepAttention().eval(), inputs)
    mod, params = tvm.relax.frontend.detach_params(import_program(program))
    built = build(ImportedModel(mod, {"main": params.get("main", [])}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert "cls.cached_attention_" in dense
    for op in ("R.matmul", "R.nn.softmax", "R.where"):
        assert op not in dense
    vm = tvm.relax.VirtualMachine(built.executable, tvm.cpu())
    got = [t.numpy() for t in vm["main"](*(tvm.runtime.tensor(a) for a in arrays))]
    with torch.no_grad():
        expected = [t.numpy() for t in _StepAttention()(*inputs)]
    for value, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-5)
