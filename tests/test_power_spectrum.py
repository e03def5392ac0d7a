"""The fbank's power spectrum kernel equals the PyTorch front end's factored DFT for every
vector width; the power spectrum as torch exports it compiles to that one kernel, and with the
frame cutting and windowing of a waveform, to the kernel that reads the waveform itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm.target import Target

from tinyasr.compile.kernels.fbank import power_spectrum_kernel, waveform_power_spectrum_kernel
from tinyasr.compile.kernels.fp32 import VectorUnit, vector_unit
from tinyasr.compile.passes.expose_shape_vars import ExposeShapeVars
from tinyasr.compile.pipeline import ImportedModel, IRDumper, build, import_program
from tinyasr.model.network.framing import FRAME_LENGTH, FRAME_SHIFT
from tinyasr.model.network.frontend import NUM_BINS, Fbank, frames_of
from tinyasr.targets.boards import board_target, get_board

HOST = board_target(get_board("host"))


def _frames(count: int, seed: int) -> np.ndarray:
    """`count` frames at int16 scale."""
    return (np.random.default_rng(seed).standard_normal((count, FRAME_LENGTH)) * 3000
            ).astype(np.float32)


def _reference(frames: np.ndarray) -> np.ndarray:
    """The front end's power spectrum in float64."""
    with torch.no_grad():
        return Fbank().double().power_spectrum(torch.from_numpy(frames).double()[None])[0].numpy()


@pytest.mark.parametrize("unit", [VectorUnit(16, 32), VectorUnit(8, 16), VectorUnit(4, 32)],
                         ids=["avx512", "avx2", "neon"])
def test_power_spectrum_kernel_equals_the_front_end(unit: VectorUnit):
    """Frames in whole tiles and left over (500, 13, 9), one tile, one frame; the kernel's
    shape for AVX-512, AVX2 and NEON/RVV vectors, all run here (LLVM splits wider vectors)."""
    kernel = power_spectrum_kernel(unit).with_attr("global_symbol", "main")
    library = tvm.compile(tvm.IRModule({"main": kernel}), Target(HOST)).mod
    fbank = Fbank()
    for count in (500, 13, 9, 8, 1):
        frames = _frames(count, count)
        power = tvm.runtime.tensor(np.zeros((count, NUM_BINS), np.float32))
        library["main"](*(tvm.runtime.tensor(a) for a in (
            frames, fbank.inner_dft.numpy(), fbank.outer_dft.numpy())), power)
        expected = _reference(frames)
        np.testing.assert_allclose(power.numpy(), expected, rtol=1e-4,
                                   atol=1e-6 * np.abs(expected).max())


class _PowerSpectrum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fbank = Fbank()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.fbank.power_spectrum(frames)


def test_power_spectrum_as_torch_exports_it_is_one_kernel(tmp_path):
    """No matmul, transpose or split is left of the two DFT stages and the squared magnitudes,
    only the kernel, at a symbolic frame count, and it computes torch's power spectrum."""
    module = _PowerSpectrum().eval()
    example = torch.from_numpy(_frames(5, 0))[None]
    program = torch.export.export(module, (example,),
                                  dynamic_shapes={"frames": {1: torch.export.Dim("frames")}})
    mod, params = tvm.relax.frontend.detach_params(import_program(program))
    built = build(ImportedModel(mod, {"main": params.get("main", [])}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert f"cls.power_spectrum_{vector_unit(Target(HOST)).lanes}, " in dense
    for op in ("R.matmul", "R.permute_dims", "R.split"):
        assert op not in dense

    vm = tvm.relax.VirtualMachine(built.executable, tvm.cpu())
    weights = [tvm.runtime.tensor(p) for p in params.get("main", [])]
    for count in (123, 2):
        frames = _frames(count, count)
        got = vm["main"](tvm.runtime.tensor(frames[None]), *weights)[0].numpy()
        with torch.no_grad():
            expected = module(torch.from_numpy(frames)[None]).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def _waveform(samples: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((1, samples)) * 3000).astype(np.float32)


def _frames_reference(waveform: np.ndarray, count: int) -> np.ndarray:
    """The front end's power spectrum of the first `count` frames, in float64."""
    fbank = Fbank().double()
    with torch.no_grad():
        frames = fbank.windowed(frames_of(torch.from_numpy(waveform).double()))[:, :count]
        return fbank.power_spectrum(frames)[0].numpy()


@pytest.mark.parametrize("unit", [VectorUnit(16, 32), VectorUnit(8, 16), VectorUnit(4, 32)],
                         ids=["avx512", "avx2", "neon"])
def test_waveform_kernel_cuts_and_windows_the_frames_itself(unit: VectorUnit):
    """Frames in whole tiles and left over, read from a waveform longer than they need."""
    kernel = waveform_power_spectrum_kernel(unit).with_attr("global_symbol", "main")
    library = tvm.compile(tvm.IRModule({"main": kernel}), Target(HOST)).mod
    fbank = Fbank()
    for count in (503, 9, 1):
        waveform = _waveform(FRAME_SHIFT * (count - 1) + FRAME_LENGTH + 77, count)
        power = tvm.runtime.tensor(np.zeros((count, NUM_BINS), np.float32))
        library["main"](*(tvm.runtime.tensor(a) for a in (
            waveform, fbank.window.numpy(), fbank.inner_dft.numpy(), fbank.outer_dft.numpy())),
            power)
        expected = _frames_reference(waveform, count)
        np.testing.assert_allclose(power.numpy(), expected, rtol=1e-4,
                                   atol=1e-5 * np.abs(expected).max())


class _WaveformPowerSpectrum(_PowerSpectrum):
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:  # pyright: ignore[reportIncompatibleMethodOverride]
        return self.fbank.power_spectrum(self.fbank.windowed(frames_of(waveform)))


def test_the_power_spectrum_of_a_waveform_is_one_kernel_reading_its_samples(tmp_path):
    """Kaldi's frame cutting (frames_of: padding, rows of 160, three slices), mean removal,
    pre-emphasis and window fold into the kernel, which reads the waveform itself: the
    padded copy and the (T, 400) frames are gone, at a symbolic length."""
    module = _WaveformPowerSpectrum().eval()
    rows = torch.export.Dim("rows")
    program = torch.export.export(module, (torch.from_numpy(_waveform(FRAME_SHIFT * 5 + 400, 0)),),
                                  dynamic_shapes={"waveform": {1: FRAME_SHIFT * rows + 400}})
    mod, params = tvm.relax.frontend.detach_params(import_program(program))
    mod = ExposeShapeVars()(mod)   # the VM is told the row count, as encode is
    built = build(ImportedModel(mod, {"main": params.get("main", [])}), HOST, IRDumper(tmp_path))
    dense = next(tmp_path.glob("*-dense.py")).read_text()
    assert f"cls.waveform_power_spectrum_{vector_unit(Target(HOST)).lanes}, (waveform, " in dense
    for op in ("R.mean", "R.concat", "R.strided_slice", "R.nn.pad"):
        assert op not in dense

    vm = tvm.relax.VirtualMachine(built.executable, tvm.cpu())
    weights = [tvm.runtime.tensor(p) for p in params.get("main", [])]
    for count in (123, 2):
        waveform = _waveform(FRAME_SHIFT * (count - 1) + 400, count)
        got = vm["main"](tvm.runtime.ShapeTuple((count - 1,)), tvm.runtime.tensor(waveform),
                         *weights)[0].numpy()
        with torch.no_grad():
            expected = module(torch.from_numpy(waveform)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
