"""Multi-head attention, as torch exports model/network/san_m.py's `attend`, becomes one kernel
(compile/kernels/attention.py).

Pattern, with heads(x, order) = permute_dims(reshape(x (A, T, H*E), [A, T, H, E]), order)
(the permute maybe a chain of permutes with that composition: Whisper's keys are split into
heads, then transposed):

    scores  = matmul(heads(q, [0, 2, 1, 3]), heads(k, [0, 2, 3, 1]))     (B, H, M, N)
              maybe multiply(scores, c), c a scalar constant: Whisper scales the scores, and
              the kernel takes the query scaled instead (exact for c = 1/sqrt(64) = 1/8)
              maybe where(not(expand_dims(keep, 1)), -1e9, scores)        keep (B, M, N) bool
    context = matmul(softmax(scores, axis=-1), heads(v, [0, 2, 1, 3]))   (B, H, M, E)
    out     = reshape(permute_dims(context, [0, 2, 1, 3]), [B, M, H*E])

A matmul's operands may be broadcast to B and flattened to (B*H, ., .) on the way (how the
importer batches a 4-d matmul), and k and v may have batch 1, shared by every b (the decoder's
cross-attention keys and values). Rewrite: out = call_tir(the kernel, q, k, v[, keep]); the
head transposes, the scores and the probabilities go. Run it before BatchedMatmul, which
takes the attention matmuls this pass leaves.

With `int8` (a model compiled with int8 activations: Whisper --int8), an unmasked attention of
at least INT8_MIN_ROWS query rows, a static count, becomes the int8 attention kernel instead
(compile/kernels/int8_attention.py) where the target's dot ISA has one: it rounds and packs
each head's keys and values once per call, which only pays over many query rows (the encoder's
1500), not a decoder step's few. When its q, k and v are the thirds of one split fused
projection (Whisper's encoder self-attention), the kernel reads them from the projection's
output where they lie, the scores' scale folded in: the split's copy goes.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import mutator
from tvm.target import Target

from tinyasr.compile.kernels.attention import attention_supported, attention_tunable
from tinyasr.compile.kernels.int8 import DotIsa, dot_isa
from tinyasr.compile.kernels.int8_attention import (
    int8_attention_supported,
    int8_attention_tunable,
)
from tinyasr.compile.kernels.softmax import MASKED_SCORE
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op, scalar_constant, split_part

QUERY_ORDER = VALUE_ORDER = [0, 2, 1, 3]
KEY_ORDER = [0, 2, 3, 1]
INT8_MIN_ROWS = 64   # query rows from which the int8 kernel's per-call packing pays


@dataclass
class Heads:
    """A (A, T, H*E) tensor seen as its H heads of E columns."""
    source: relax.Expr
    heads: int
    head_dim: int


def _same(a: tvm.ir.Expr, b: tvm.ir.Expr) -> bool:
    return tvm_ffi.structural_equal(a, b)


@mutator
class _Rewriter(Fp32KernelRewriter):
    def __init__(self, mod: tvm.IRModule, target: Target, choices: KernelChoices | None = None,
                 int8: bool = False):
        super().__init__(mod, target, choices)
        self.int8_isa: DotIsa | None = dot_isa(target) if int8 else None

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not is_op(call, "relax.reshape") or call.ty.ndim != 3 or call.ty.dtype != "float32":
            return call
        matched = self._attention(call)
        if matched is None:
            return call
        q, k, v, keep, scale = matched
        masked = keep is not None
        int8 = self._int8(q, masked)
        projection = self._projection(q, k, v) if int8 else None
        if int8 and projection is not None:   # one input: the fused projection's output
            kernel = self._tunable(int8_attention_tunable(self.int8_isa, q.heads, q.head_dim,
                                                          1.0 if scale is None else scale))
            return relax.call_tir(kernel, [projection], call.ty)
        if scale is not None:   # the kernels take q scaled: (q c) . k = c (q . k)
            q = Heads(self.builder_.emit(relax.op.multiply(q.source, relax.const(scale,
                                                                               "float32"))),
                      q.heads, q.head_dim)
        if int8:
            kernel = self._tunable(int8_attention_tunable(self.int8_isa, q.heads, q.head_dim))
        else:
            kernel = self._tunable(attention_tunable(self.unit, q.heads, q.head_dim, masked))
        inputs = [q.source, k.source, v.source, *([keep] if keep is not None else [])]
        return relax.call_tir(kernel, inputs, call.ty)

    def _projection(self, q: Heads, k: Heads, v: Heads) -> relax.Expr | None:
        """x when q, k and v are the three equal parts of split(x (B, M, 3*H*E), axis=2), in
        that order (a fused self-attention projection), else None."""
        parts = [part for part in (split_part(h.source, self._bound) for h in (q, k, v))
                 if part is not None]
        if len(parts) != 3:
            return None
        split = parts[0][0]
        x, dim = split.args[0], q.heads * q.head_dim
        if not (all(part[0].same_as(split) for part in parts)
                and [part[1] for part in parts] == [0, dim, 2 * dim]):
            return None
        width = x.ty.shape.values[2] if x.ty.shape is not None else None
        if not (isinstance(width, tvm.tirx.IntImm) and int(width) == 3 * dim):
            return None
        return x

    def _int8(self, q: Heads, masked: bool) -> bool:
        """Whether the int8 kernel takes this attention (see the module's doc)."""
        rows = q.source.ty.shape.values[1]
        return (self.int8_isa is not None and not masked
                and int8_attention_supported(self.int8_isa, q.head_dim)
                and isinstance(rows, tvm.tirx.IntImm) and int(rows) >= INT8_MIN_ROWS)

    def _attention(self, out: relax.Call
                   ) -> tuple[Heads, Heads, Heads, relax.Expr | None, float | None] | None:
        """(q, k, v, keep or None, the scores' scale or None) when `out` is the reshape
        ending the pattern."""
        transposed = self._bound(out.args[0])
        if not self.permutes(transposed, QUERY_ORDER):
            return None
        context = self.unflattened(transposed.args[0])
        if not is_op(context, "relax.matmul"):
            return None
        softmax = self.unflattened(context.args[0])
        if not (is_op(softmax, "relax.nn.softmax") and int(softmax.attrs.axis) in (-1, 3)):
            return None
        scores, keep = self._bound(softmax.args[0]), None
        if is_op(scores, "relax.where"):
            keep = self._mask(scores)
            if keep is None:
                return None
            scores = self._bound(scores.args[2])
        scores, scale = self._scaled(scores)
        scores = self.unflattened(scores)
        if not is_op(scores, "relax.matmul"):
            return None
        q, k, v = (self._heads(operand, order) for operand, order in (
            (scores.args[0], QUERY_ORDER), (scores.args[1], KEY_ORDER),
            (context.args[1], VALUE_ORDER)))
        if not (q and k and v and self._consistent(out, q, k, v, keep)):
            return None
        return q, k, v, keep, scale

    def _scaled(self, scores: relax.Expr) -> tuple[relax.Expr, float | None]:
        """(x, c) when `scores` is multiply(x, c) by a scalar constant (Whisper scales the
        scores, SAN-M the query), else (scores, None)."""
        if is_op(scores, "relax.multiply"):
            for x, c in (scores.args, scores.args[::-1]):
                value = scalar_constant(c)
                if value is not None:
                    return self._bound(x), value
        return scores, None

    def _heads(self, operand: relax.Expr, order: list[int]) -> Heads | None:
        """The (A, T, H*E) source when `operand` is heads(source, order), maybe flattened."""
        permuted = self.unflattened(operand)
        source, axes = self._permutation(permuted)
        if axes != order:
            return None
        split = self._bound(source)
        if not is_op(split, "relax.reshape"):
            return None
        source = split.args[0]
        shape = split.ty.shape.values if split.ty.shape is not None else None
        source_shape = source.ty.shape.values if source.ty.shape is not None else None
        if not (shape is not None and len(shape) == 4 and source_shape is not None
                and len(source_shape) == 3 and source.ty.dtype == "float32"
                and all(isinstance(d, tvm.tirx.IntImm) for d in (*shape[2:], source_shape[2]))
                and _same(shape[0], source_shape[0]) and _same(shape[1], source_shape[1])):
            return None
        return Heads(source, int(shape[2]), int(shape[3]))

    def _permutation(self, expr: relax.Expr) -> tuple[relax.Expr, list[int] | None]:
        """(x, axes) when `expr` is x permuted by `axes`, through consecutive permute_dims
        composed (Whisper's keys: split into heads, then transposed), else (expr, None)."""
        axes = None
        while is_op(expr, "relax.permute_dims") and expr.attrs.axes is not None:
            inner = [int(axis) for axis in expr.attrs.axes]
            axes = inner if axes is None else [inner[axis] for axis in axes]
            expr = self._bound(expr.args[0])
        return expr, axes

    def _consistent(self, out: relax.Call, q: Heads, k: Heads, v: Heads,
                    keep: relax.Expr | None) -> bool:
        """Same heads; q (B, M, D) is out's shape; k and v (G, N, D) alike, G = 1 or B; keep
        (B, M, N); E supported by the kernel."""
        batch, rows, dim = out.ty.shape.values
        q_shape, k_shape, v_shape = (h.source.ty.shape.values for h in (q, k, v))
        groups, frames = k_shape[0], k_shape[1]
        return (q.heads == k.heads == v.heads and q.head_dim == k.head_dim == v.head_dim
                and attention_supported(self.unit, q.head_dim)
                and all(_same(a, b) for a, b in zip(q_shape, (batch, rows, dim), strict=True))
                and all(_same(a, b) for a, b in zip(v_shape, k_shape, strict=True))
                and int(dim) == q.heads * q.head_dim
                and ((isinstance(groups, tvm.tirx.IntImm) and int(groups) == 1)
                     or _same(groups, batch))
                and (keep is None or all(
                    _same(a, b) for a, b in
                    zip(keep.ty.shape.values, (batch, rows, frames), strict=True))))

    def _mask(self, where: relax.Call) -> relax.Expr | None:
        """keep (B, M, N) bool when `where` is where(not(expand_dims(keep, 1)), MASKED_SCORE,
        scores): attention's masked_fill, one mask for every head."""
        condition, fill = self._bound(where.args[0]), self._bound(where.args[1])
        inverted = self._bound(condition.args[0]) if is_op(condition, "relax.bitwise_not") else None
        if not (is_op(inverted, "relax.expand_dims")
                and [int(axis) for axis in inverted.attrs.axis] == [1]
                and scalar_constant(fill) == MASKED_SCORE):
            return None
        keep = inverted.args[0]
        return keep if keep.ty.ndim == 3 and keep.ty.dtype == "bool" else None


@tvm.transform.module_pass(opt_level=0, name="FusedAttention")
class FusedAttention(KernelPass):
    """Multi-head attention -> the fused attention kernel (`int8`: the int8 one where it
    applies)."""

    rewriter = _Rewriter

    def __init__(self, target: Target, choices: KernelChoices | None = None, int8: bool = False):
        super().__init__(target, choices)
        self.int8 = int8

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _Rewriter(mod, self.target, self.choices, self.int8).transform()
