"""The fbank's power spectrum, as torch exports model/network/frontend.py's `Fbank.power_spectrum`,
becomes one kernel (compile/kernels/fbank.py).

Pattern, seen through the importer's reshapes and broadcasts (unflattened):

    columns = permute_dims(reshape(frames (B, T, 400), [B, T, 25, 16]), [0, 1, 3, 2])
    inner   = matmul(columns, inner_dft (25, 32))                    (B*T*16, 32)
    outer   = matmul(permute_dims(inner as (B, T, 16, 16, 2), [3, 0, 1, 4, 2]),
                     outer_dft (16, 32, 32))                         (16, B*T, 32)
    re, im  = split(outer, [16], axis=-1)
    power   = reshape(permute_dims(re * re + im * im, [1, 2, 0, 3]), [B, T, 256])

Rewrite: power = call_tir(the kernel, frames as (B*T, 400), inner_dft, outer_dft) as
(B, T, 256): the three transposes, the split and both stages' outputs go. Run it before
Fp32Matmul and BatchedMatmul, which would take the two matmuls.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.fbank import (
    INNER_COLUMNS,
    OUTER_COLUMNS,
    OUTER_INPUTS,
    POWER_COLUMNS,
    power_spectrum_kernel,
    power_spectrum_supported,
)
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op
from tinyasr.model.network.framing import FRAME_LENGTH
from tinyasr.model.network.frontend import GROUPS, ROWS, STRIDE

COLUMNS_ORDER = [0, 1, 3, 2]
GROUPS_ORDER = [3, 0, 1, 4, 2]
FRAMES_ORDER = [1, 2, 0, 3]


def _size(dim: tvm.ir.Expr) -> int | None:
    return int(dim) if isinstance(dim, tvm.tirx.IntImm) else None


def _sizes(expr: relax.Expr) -> list[int | None] | None:
    """`expr`'s sizes, None for a symbolic one; None for an unknown shape."""
    return None if expr.ty.shape is None else [_size(d) for d in expr.ty.shape.values]


@mutator
class _Rewriter(Fp32KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not (is_op(call, "relax.reshape") and call.ty.ndim == 3
                and call.ty.dtype == "float32" and power_spectrum_supported(self.unit)):
            return call
        matched = self._power_spectrum(call)
        if matched is None:
            return call
        frames, inner_dft, outer_dft = matched
        batch, count, _ = frames.ty.shape.values
        rows = batch * count
        flat = self.builder_.emit(relax.op.reshape(frames, [rows, FRAME_LENGTH]))
        kernel = self._kernel(f"power_spectrum_{self.unit.lanes}",
                              lambda: power_spectrum_kernel(self.unit))
        power = self.builder_.emit(relax.call_tir(
            kernel, [flat, inner_dft, outer_dft],
            relax.TensorType([rows, POWER_COLUMNS], "float32")))
        return relax.op.reshape(power, call.ty.shape)

    def _power_spectrum(self, out: relax.Call
                        ) -> tuple[relax.Expr, relax.Expr, relax.Expr] | None:
        """(frames, inner_dft, outer_dft) when `out` is the reshape ending the pattern."""
        transposed = self._bound(out.args[0])
        if not self.permutes(transposed, FRAMES_ORDER):
            return None
        outer = self._squared_magnitude_source(self.unflattened(transposed.args[0]))
        if outer is None:
            return None
        groups = self.unflattened(outer.args[0])
        if not self.permutes(groups, GROUPS_ORDER):
            return None
        unpaired = self._bound(groups.args[0])
        inner = self.unflattened(unpaired)
        if not (self._reshapes_to(unpaired, [STRIDE, GROUPS, 2]) and is_op(inner, "relax.matmul")):
            return None
        columns = self.unflattened(inner.args[0])
        if not self.permutes(columns, COLUMNS_ORDER):
            return None
        rows = self._bound(columns.args[0])
        if not self._reshapes_to(rows, [ROWS, STRIDE]):
            return None
        frames, inner_dft, outer_dft = rows.args[0], inner.args[1], self.unflattened(
            outer.args[1])
        if not self._consistent(out, frames, inner_dft, outer_dft):
            return None
        return frames, inner_dft, outer_dft

    def _reshapes_to(self, expr: relax.Expr, trailing: list[int]) -> bool:
        """`expr` is a reshape whose last dimensions are `trailing`."""
        if not is_op(expr, "relax.reshape"):
            return False
        sizes = _sizes(expr)
        return sizes is not None and sizes[-len(trailing):] == trailing

    def _squared_magnitude_source(self, power: relax.Expr) -> relax.Call | None:
        """The matmul m when `power` is re * re + im * im with (re, im) = split(m, 2)."""
        if not is_op(power, "relax.add"):
            return None
        halves = []
        for square in (self._bound(a) for a in power.args):
            if not (is_op(square, "relax.multiply") and square.args[0].same_as(square.args[1])):
                return None
            halves.append(self._bound(square.args[0]))
        if not all(isinstance(h, relax.TupleGetItem) for h in halves):
            return None
        first, second = halves
        if {first.index, second.index} != {0, 1} or not first.tuple_value.same_as(
                second.tuple_value):
            return None
        split = self._bound(first.tuple_value)
        if not (is_op(split, "relax.split") and int(split.attrs.axis) in (-1, 2)):
            return None
        matmul = self.unflattened(split.args[0])
        return matmul if is_op(matmul, "relax.matmul") else None

    def _consistent(self, out: relax.Call, frames: relax.Expr, inner_dft: relax.Expr,
                    outer_dft: relax.Expr) -> bool:
        """frames (B, T, 400) and out (B, T, 256) float32; the two DFTs of the fbank's sizes."""
        frames_sizes, out_sizes = _sizes(frames), _sizes(out)
        return (frames_sizes is not None and len(frames_sizes) == 3
                and frames_sizes[2] == FRAME_LENGTH
                and out_sizes is not None and out_sizes[2] == POWER_COLUMNS
                and all(tvm_ffi.structural_equal(a, b) for a, b in
                        zip(frames.ty.shape.values[:2], out.ty.shape.values[:2], strict=True))
                and _sizes(inner_dft) == [ROWS, INNER_COLUMNS]
                and _sizes(outer_dft) == [GROUPS, OUTER_INPUTS, OUTER_COLUMNS]
                and all(t.ty.dtype == "float32" for t in (frames, inner_dft, outer_dft)))


@tvm.transform.module_pass(opt_level=0, name="FusedPowerSpectrum")
class FusedPowerSpectrum(KernelPass):
    """The fbank's two-stage DFT and squared magnitudes -> the power spectrum kernel."""

    rewriter = _Rewriter
