"""passes/split_heads.py: a fused projection's parts split into heads are copy kernels that
read the projection where it lies, with the values torch's reshape and transpose give."""

from __future__ import annotations

import numpy as np
import torch
import tvm
from torch import nn

from tinyasr.compile.pipeline import ImportedModel, IRDumper, build, import_program
from tinyasr.model.whisper.model import split_heads
from tinyasr.targets.boards import board_target, get_board

HEADS, HEAD_DIM = 3, 16


class _CrossKeysValues(nn.Module):
    """The decoder's cross-attention keys and values as Whisper's encode returns them: one
    kv projection's halves, each split into heads; and a plain tensor's heads."""

    def forward(self, kv: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k, v = kv.chunk(2, dim=-1)
        return split_heads(k, HEADS), split_heads(v, HEADS), split_heads(x, HEADS)


def test_heads_of_split_parts_are_copies_of_the_projection(tmp_path):
    rng = np.random.default_rng(0)
    kv = rng.standard_normal((2, 37, 2 * HEADS * HEAD_DIM)).astype(np.float32)
    x = rng.standard_normal((2, 37, HEADS * HEAD_DIM)).astype(np.float32)
    program = torch.export.export(_CrossKeysValues().eval(),
                                  (torch.from_numpy(kv), torch.from_numpy(x)))
    mod, params = tvm.relax.frontend.detach_params(import_program(program))
    built = build(ImportedModel(mod, {"main": params.get("main", [])}),
                  board_target(get_board("host")), IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    width = 2 * HEADS * HEAD_DIM
    for kernel in (f"heads_w{width}_at0_h{HEADS}x{HEAD_DIM}",
                   f"heads_w{width}_at{width // 2}_h{HEADS}x{HEAD_DIM}",
                   f"heads_w{width // 2}_at0_h{HEADS}x{HEAD_DIM}"):
        assert f"cls.{kernel}, " in dense
    assert "R.split" not in dense and "R.permute_dims" not in dense
    vm = tvm.relax.VirtualMachine(built.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(kv), tvm.runtime.tensor(x))
    with torch.no_grad():
        expected = _CrossKeysValues()(torch.from_numpy(kv), torch.from_numpy(x))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g.numpy(), e.numpy())
