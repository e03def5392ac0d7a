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

When the frames are `Fbank.windowed(frames_of(waveform))` of one utterance:

    rows     = reshape(padded (1, S), [1, R, 160])
    raw      = concat(rows[:, 0:T], rows[:, 1:T+1], rows[:, 2:T+2][:, :, 0:80], axis=2)
    centred  = raw - mean(raw, axis=2, keepdims)
    frames   = (centred - 0.97 * concat(centred[:, :, 0:1], centred[:, :, 0:-1], axis=2))
               * window (400,)

the kernel that cuts and windows each tile of frames itself takes `padded` and `window`
instead (compile/kernels/fbank.py waveform_power_spectrum_kernel): the raw, centred and
windowed frames are never stored; nor is `padded` where it pads zeros at the end that no
frame reads (the encoder's waveform is exactly as long as its frames read).
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.fbank import (
    INNER_COLUMNS,
    OUTER_COLUMNS,
    OUTER_INPUTS,
    POWER_COLUMNS,
    power_spectrum_kernel,
    power_spectrum_supported,
    waveform_power_spectrum_kernel,
)
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import (
    KernelPass,
    is_op,
    provable_for_sizes,
    scalar_constant,
    static_sizes,
)
from tinyasr.model.network.framing import FRAME_LENGTH, FRAME_SHIFT
from tinyasr.model.network.frontend import GROUPS, PREEMPHASIS, ROWS, STRIDE

COLUMNS_ORDER = [0, 1, 3, 2]
GROUPS_ORDER = [3, 0, 1, 4, 2]
FRAMES_ORDER = [1, 2, 0, 3]


def _equal(a: tvm.ir.Expr, b: tvm.ir.Expr) -> bool:
    """Two sizes provably equal (the importer may leave one unsimplified: 1 + (160 n) // 160)."""
    return tvm.sym.Analyzer().can_prove_equal(a, b)


def _close(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) <= 1e-6 * abs(expected)


def _slice(expr: relax.Expr) -> tuple[relax.Expr, int, int, int | None] | None:
    """(source, axis, begin, end) of a one-axis, unit-stride strided_slice with a constant
    begin (end None when symbolic), else None."""
    if not is_op(expr, "relax.strided_slice"):
        return None
    axes, begins, ends, strides = (list(arg.fields) for arg in expr.args[1:5])
    if len(axes) != 1 or not all(isinstance(v, tvm.tirx.IntImm)
                                 for v in (axes[0], begins[0], strides[0])) or int(strides[0]) != 1:
        return None
    end = int(ends[0]) if isinstance(ends[0], tvm.tirx.IntImm) else None
    return expr.args[0], int(axes[0]), int(begins[0]), end


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
        out_ty = relax.TensorType([rows, POWER_COLUMNS], "float32")
        source = self._waveform_source(frames)
        if source is not None:
            kernel = self._kernel(f"waveform_power_spectrum_{self.unit.lanes}",
                                  lambda: waveform_power_spectrum_kernel(self.unit))
            power = self.builder_.emit(relax.call_tir(
                kernel, [*source, inner_dft, outer_dft], out_ty))
            return relax.op.reshape(power, call.ty.shape)
        flat = self.builder_.emit(relax.op.reshape(frames, [rows, FRAME_LENGTH]))
        kernel = self._kernel(f"power_spectrum_{self.unit.lanes}",
                              lambda: power_spectrum_kernel(self.unit))
        power = self.builder_.emit(relax.call_tir(kernel, [flat, inner_dft, outer_dft], out_ty))
        return relax.op.reshape(power, call.ty.shape)

    def _waveform_source(self, frames: relax.Expr) -> tuple[relax.Expr, relax.Expr] | None:
        """(padded waveform (1, S), window (400,)) when `frames` (1, T, 400) are the windowed
        frames cut from it (the module docstring's pattern), else None."""
        windowed, frame_sizes = self._bound(frames), static_sizes(frames)
        if not (is_op(windowed, "relax.multiply")
                and static_sizes(windowed.args[1]) == [FRAME_LENGTH]
                and frame_sizes is not None and frame_sizes[0] == 1):
            return None
        emphasized = self._bound(windowed.args[0])
        if not is_op(emphasized, "relax.subtract"):
            return None
        centred_var = emphasized.args[0]
        centred, scaled = self._bound(centred_var), self._bound(emphasized.args[1])
        if not (is_op(scaled, "relax.multiply") and self._previous_of(scaled.args[0], centred_var)
                and _close(scalar_constant(scaled.args[1]), PREEMPHASIS)):
            return None
        if not is_op(centred, "relax.subtract"):
            return None
        raw_var, mean = centred.args[0], self._bound(centred.args[1])
        if not (is_op(mean, "relax.mean") and mean.args[0].same_as(raw_var)
                and [int(a) % 3 for a in mean.attrs.axis] == [2] and bool(mean.attrs.keepdims)):
            return None
        padded = self._framed_waveform(self._bound(raw_var), frames.ty.shape.values[1])
        return None if padded is None else (padded, windowed.args[1])

    def _previous_of(self, shifted: relax.Expr, centred: relax.Expr) -> bool:
        """`shifted` is concat(centred[:, :, 0:1], centred[:, :, 0:-1], axis=2)."""
        joined = self._bound(shifted)
        if not (is_op(joined, "relax.concat") and int(joined.attrs.axis) % 3 == 2):
            return False
        parts = [_slice(self._bound(part)) for part in joined.args[0].fields]
        found = [part for part in parts if part is not None]
        return (len(parts) == len(found) == 2 and all(p[0].same_as(centred) for p in found)
                and found[0][1:] == (2, 0, 1) and found[1][1:] in ((2, 0, -1),
                                                                    (2, 0, FRAME_LENGTH - 1)))

    def _framed_waveform(self, raw: relax.Expr, count: tvm.ir.expr.ExprWithOp) -> relax.Expr | None:
        """The padded waveform (1, S) when `raw` is its frames 0 .. count - 1 cut as
        `frames_of` cuts them (frame t: rows t, t + 1 and half of t + 2 of 160 samples)."""
        if not (is_op(raw, "relax.concat") and int(raw.attrs.axis) % 3 == 2
                and len(raw.args[0].fields) == 3):
            return None
        first, second, tail = (self._bound(part) for part in raw.args[0].fields)
        tail_slice = _slice(tail)
        if tail_slice is None or tail_slice[1:] != (2, 0, FRAME_LENGTH - 2 * FRAME_SHIFT):
            return None
        slices = [_slice(first), _slice(second), _slice(self._bound(tail_slice[0]))]
        found = [s for s in slices if s is not None]
        if len(found) != len(slices):
            return None
        rows_var = found[0][0]
        if not all(s[0].same_as(rows_var) and s[1] == 1 and s[2] == offset
                   for offset, s in enumerate(found)):
            return None
        if not all(_equal(part.ty.shape.values[1], count) for part in raw.args[0].fields):
            return None
        rows, row_sizes = self._bound(rows_var), static_sizes(self._bound(rows_var))
        if not (is_op(rows, "relax.reshape") and row_sizes is not None
                and row_sizes[0] == 1 and row_sizes[2] == FRAME_SHIFT):
            return None
        padded = rows.args[0]
        sizes = static_sizes(padded)
        if sizes is None or len(sizes) != 2 or sizes[0] != 1:
            return None
        # the last frame's end; TVM declares its operators to return Expr | NotImplemented
        read = count * FRAME_SHIFT + (FRAME_LENGTH - FRAME_SHIFT)  # pyright: ignore[reportOperatorIssue]
        return self._unpadded(padded, read)

    def _unpadded(self, padded: relax.Expr, read: tvm.ir.Expr) -> relax.Expr:
        """The input of `padded` when that is a zero padding at the end that the first `read`
        samples never reach (frames_of pads to whole rows of 160); else `padded` itself."""
        pad = self._bound(padded)
        if not (is_op(pad, "relax.nn.pad") and str(pad.attrs.pad_mode) == "constant"
                and float(pad.attrs.pad_value) == 0.0
                and [int(w) for w in pad.attrs.pad_width][:3] == [0, 0, 0]):
            return padded
        length = pad.args[0].ty.shape.values[1]
        return pad.args[0] if provable_for_sizes(read <= length, length) else padded

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
        sizes = static_sizes(expr)
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
        frames_sizes, out_sizes = static_sizes(frames), static_sizes(out)
        return (frames_sizes is not None and len(frames_sizes) == 3
                and frames_sizes[2] == FRAME_LENGTH
                and out_sizes is not None and out_sizes[2] == POWER_COLUMNS
                and all(_equal(a, b) for a, b in
                        zip(frames.ty.shape.values[:2], out.ty.shape.values[:2], strict=True))
                and static_sizes(inner_dft) == [ROWS, INNER_COLUMNS]
                and static_sizes(outer_dft) == [GROUPS, OUTER_INPUTS, OUTER_COLUMNS]
                and all(t.ty.dtype == "float32" for t in (frames, inner_dft, outer_dft)))


@tvm.transform.module_pass(opt_level=0, name="FusedPowerSpectrum")
class FusedPowerSpectrum(KernelPass):
    """The fbank's two-stage DFT and squared magnitudes -> the power spectrum kernel."""

    rewriter = _Rewriter
