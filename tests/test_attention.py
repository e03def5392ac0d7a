"""The fused attention kernel equals numpy's attention for every kind of width, masked or not,
with keys and values per batch or shared; attention as torch exports model/network/san_m.py's
`attend` compiles to that one kernel and computes what torch computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm.target import Target

from tinyasr.compile.kernels.attention import attention_kernel, attention_tiles
from tinyasr.compile.kernels.fp32 import vector_unit
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build, import_program
from tinyasr.model.network.san_m import attend
from tinyasr.targets.boards import board_target, get_board

HOST = board_target(get_board("host"))
HEADS, HEAD_DIM = 4, 36


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
