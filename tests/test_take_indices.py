"""A gather the importer emits clips a bad index into range instead of reading past the
tensor (compile/passes/clip_take_indices.py)."""

from __future__ import annotations

import numpy as np
import torch
import tvm
from torch import nn

from tinyasr.compile.passes.clip_take_indices import ClipTakeIndices
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build, import_program
from tinyasr.targets.boards import board_target, get_board

HOST = board_target(get_board("host"))


def test_an_out_of_range_token_reads_the_last_row(tmp_path):
    embedding = nn.Embedding(5, 3)
    program = torch.export.export(embedding.eval(), (torch.tensor([0, 1]),),
                                  dynamic_shapes={"input": {0: torch.export.Dim("tokens")}})
    mod, params = tvm.relax.frontend.detach_params(ClipTakeIndices()(import_program(program)))
    assert 'mode="fast"' not in mod.script()
    built = build(ImportedModel(mod, {"main": params["main"]}), HOST, IRDumper(tmp_path))
    vm = tvm.relax.VirtualMachine(built.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(np.array([1, 1_000_000, -7])), *params["main"])[0]
    weight = embedding.weight.detach().numpy()
    np.testing.assert_array_equal(got.numpy(), weight[[1, 4, 0]])
