"""Layout permutes move past elementwise ops and cancel in pairs.

ConvertLayout (conv2d to channels-last) wraps every op it has no layout rule for in a permute
back to NCHW and one forward again; `clip` is such an op, and the int8 rounding
`clip(round(x / s), -127, 127) * s` between the subsampling's two convs came out as

    permute(clip(permute(round(x / s), to NCHW)) * s, to NHWC)

An elementwise op commutes with a permute of its operand, so each permute is moved below the
op it feeds (a binary op only when its other operand is a 0-d scalar) until it meets the
inverse permute, and the pair cancels (as does a permute that keeps every axis in place): the
rounding becomes channels-last end to end, as the int8 conv rewrite expects it. A constant pad
moves below too, its widths permuted along; a reduction over every axis to a scalar (the int8
rounding's abs-max) reads the unpermuted tensor. So the FSMN memory block's depthwise conv1d,
channels-last (NWC), loses the transposes the model wraps its padding and rounding in. Dead
permutes are left for DeadCodeElimination.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.passes.rewriting import FunctionRewriter

UNARY = {"relax.clip", "relax.round", "relax.abs", "relax.nn.relu", "relax.astype"}
SCALAR_BINARY = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide",
                 "relax.maximum", "relax.minimum"}
FULL_REDUCTIONS = {"relax.max", "relax.min", "relax.sum", "relax.mean"}


def _axes(permute: relax.Call) -> list[int]:
    return [int(axis) for axis in permute.attrs.axes]


@mutator
class _Sinker(FunctionRewriter):
    def _permute(self, expr: relax.Expr) -> relax.Call | None:
        """The permute_dims call bound to `expr`, if that is what it is."""
        bound = self._bound(expr)
        if (isinstance(bound, relax.Call) and bound.op == tvm.ir.Op.get("relax.permute_dims")
                and bound.attrs.axes is not None):
            return bound
        return None

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not isinstance(call.op, tvm.ir.Op):
            return call
        name = call.op.name
        if name == "relax.permute_dims" and call.attrs.axes is not None:
            inner = self._permute(call.args[0])
            source, axes = call.args[0], _axes(call)
            if inner is not None:   # permute(permute(x, a), b) = permute(x, a then b)
                source, axes = inner.args[0], [_axes(inner)[axis] for axis in axes]
            if axes == sorted(axes):   # nothing left to permute
                return source
            return relax.op.permute_dims(source, axes) if inner is not None else call
        permuted = self._permute(call.args[0]) if call.args else None
        if permuted is None:
            return call
        source, axes = permuted.args[0], _axes(permuted)
        if name in UNARY or (name in SCALAR_BINARY and _is_scalar(call.args[1])):
            moved = self.builder_.emit(relax.Call(call.op, [source, *call.args[1:]], call.attrs))
            return relax.op.permute_dims(moved, axes)
        if name == "relax.nn.pad" and call.attrs.pad_mode == "constant":
            widths = [int(width) for width in call.attrs.pad_width]
            unpermuted = [0] * len(widths)
            for out_axis, in_axis in enumerate(axes):
                unpermuted[2 * in_axis: 2 * in_axis + 2] = widths[2 * out_axis: 2 * out_axis + 2]
            moved = self.builder_.emit(relax.op.nn.pad(source, unpermuted, "constant",
                                                       call.attrs.pad_value))
            return relax.op.permute_dims(moved, axes)
        if name in FULL_REDUCTIONS and _reduces_to_scalar(call, len(axes)):
            return relax.Call(call.op, [source], call.attrs)
        return call


def _reduces_to_scalar(call: relax.Call, ndim: int) -> bool:
    axis = call.attrs.axis
    return not call.attrs.keepdims and (axis is None or len({int(a) % ndim for a in axis}) == ndim)


def _is_scalar(expr: relax.Expr) -> bool:
    return isinstance(expr.ty, relax.TensorType) and expr.ty.ndim == 0


@tvm.transform.module_pass(opt_level=0, name="SinkPermutes")
class SinkPermutes:
    """Moves layout permutes below elementwise ops; a permute meeting its inverse cancels."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _Sinker(mod).transform()
