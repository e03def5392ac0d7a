"""The fbank's floored log and CMVN: the kernel equals float64 numpy for every vector width and
for channels its vectors do not divide; as torch exports the front end's last step and the
model's GlobalCMVN, it compiles to that one kernel, at a symbolic frame count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm.target import Target

from tinyasr.compile.kernels.fp32 import VectorUnit, vector_unit
from tinyasr.compile.kernels.log_cmvn import log_cmvn_kernel
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build, import_program
from tinyasr.model.network.frontend import LOG_FLOOR, GlobalCMVN
from tinyasr.targets.boards import board_target, get_board

HOST = board_target(get_board("host"))


def _energies(rows: int, channels: int, seed: int) -> np.ndarray:
    """Mel energies over many decades, some under the floor (silence: exact zeros)."""
    rng = np.random.default_rng(seed)
    energies = np.exp(rng.uniform(-20, 25, (rows, channels))).astype(np.float32)
    energies[rng.random((rows, channels)) < 0.05] = 0
    return energies


def _reference(x: np.ndarray, mean: np.ndarray, istd: np.ndarray) -> np.ndarray:
    return (np.log(np.maximum(x.astype(np.float64), np.float32(LOG_FLOOR))) - mean) * istd


@pytest.mark.parametrize("unit", [VectorUnit(16, 32), VectorUnit(8, 16), VectorUnit(4, 32)],
                         ids=["avx512", "avx2", "neon"])
@pytest.mark.parametrize("channels", [80, 37])
def test_kernel_equals_numpy(unit: VectorUnit, channels: int):
    kernel = log_cmvn_kernel(unit, channels).with_attr("global_symbol", "main")
    library = tvm.compile(tvm.IRModule({"main": kernel}), Target(HOST)).mod
    rng = np.random.default_rng(channels)
    mean = rng.normal(5, 3, channels).astype(np.float32)
    istd = rng.uniform(0.1, 1, channels).astype(np.float32)
    for rows in (500, 3, 1):
        x = _energies(rows, channels, rows)
        out = tvm.runtime.tensor(np.zeros((rows, channels), np.float32))
        library["main"](*(tvm.runtime.tensor(a) for a in (
            x, np.array(LOG_FLOOR, np.float32), mean, istd)), out)
        expected = _reference(x, mean, istd)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)


class _LogCmvn(nn.Module):
    """Fbank.forward's last step, then GlobalCMVN, on (1, frames, 80) mel energies."""

    def __init__(self, mean: np.ndarray, istd: np.ndarray) -> None:
        super().__init__()
        self.cmvn = GlobalCMVN(torch.from_numpy(mean), torch.from_numpy(istd))

    def forward(self, energies: torch.Tensor) -> torch.Tensor:
        return self.cmvn(torch.log(torch.clamp(energies, min=LOG_FLOOR)))


def test_log_and_cmvn_as_torch_exports_them_are_one_kernel(tmp_path):
    rng = np.random.default_rng(0)
    mean = rng.normal(5, 3, 80).astype(np.float32)
    istd = rng.uniform(0.1, 1, 80).astype(np.float32)
    module = _LogCmvn(mean, istd).eval()
    program = torch.export.export(module, (torch.from_numpy(_energies(7, 80, 0))[None],),
                                  dynamic_shapes={"energies": {1: torch.export.Dim("frames")}})
    mod, params = tvm.relax.frontend.detach_params(import_program(program))
    built = build(ImportedModel(mod, {"main": params.get("main", [])}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert f"cls.log_cmvn_{vector_unit(Target(HOST)).lanes}_c80, " in dense
    for op in ("R.log(", "R.clip(", "R.subtract(", "R.multiply("):
        assert op not in dense

    vm = tvm.relax.VirtualMachine(built.executable, tvm.cpu())
    weights = [tvm.runtime.tensor(p) for p in params.get("main", [])]
    for frames in (123, 2):
        x = _energies(frames, 80, frames)
        got = vm["main"](tvm.runtime.tensor(x[None]), *weights)[0].numpy()
        np.testing.assert_allclose(got[0], _reference(x, mean, istd), rtol=1e-6, atol=1e-6)
