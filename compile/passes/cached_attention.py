"""A decoder step's self-attention over its cache reads only the slots written so far.

Pattern (Whisper's step, as torch exports model/whisper/model.py and BatchedMatmul would see
it), with Kc and Vc the (B, H, N, E) caches after the step's rows were written:

    scores = matmul(Q (A, M, E), reshape(permute_dims(Kc, [0, 1, 3, 2]), (A, E, N)))
    keep   = less_equal(expand_dims(arange(0, N, 1), 0), expand_dims(positions (M,), 1))
    probs  = softmax(where(bitwise_not(keep), -inf, multiply(reshape(scores, (B, H, M, N)), c)),
                     axis=-1)
    out    = matmul(reshape(probs, (A, M, N)), V (A, N, E))          V = Vc seen as (A, N, E)

Rewrite:

    out = call_tir(cached attention, Q, reshape(Kc, (A, N, E)), V, positions)
                                              compile/kernels/cached_attention.py: each query
                                              row scores, exponentiates and sums only its
                                              position's slots, not all N
Run it before BatchedMatmul, which takes the attention matmuls this pass leaves (the
cross-attention, over keys that are all valid).
"""

from __future__ import annotations

import math

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.cached_attention import (
    cached_attention_kernel,
    cached_attention_supported,
)
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op, scalar_constant


def _static(values) -> list[int] | None:
    """A shape's dimensions when all are static, else None."""
    try:
        return [int(d) for d in values]
    except TypeError:
        return None


@mutator
class _Rewriter(Fp32KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        matched = self._match(call) if is_op(call, "relax.matmul") else None
        if matched is None:
            return call
        q, keys, values, positions, scale = matched
        n, e = (int(d) for d in keys.ty.shape.values[2:])
        if not cached_attention_supported(self.unit, e):
            return call
        kernel = self._kernel(f"cached_attention_{self.unit.lanes}_n{n}_e{e}_s{scale:g}",
                              lambda: cached_attention_kernel(self.unit, n, e, scale))
        rows = q.ty.shape.values[0]
        flat_keys = self.builder_.emit(relax.op.reshape(keys, [rows, n, e]))
        return relax.call_tir(kernel, [q, flat_keys, values, positions], call.ty)

    def _match(self, call: relax.Call):
        """(Q, Kc, V, positions, c) of the pattern's last matmul, else None."""
        values = call.args[1]
        flat_probs = self._bound(call.args[0])
        if not (is_op(flat_probs, "relax.reshape") and values.ty.ndim == 3
                and call.ty.dtype == "float32"):
            return None
        probs = self._bound(flat_probs.args[0])
        if not (is_op(probs, "relax.nn.softmax")
                and int(probs.attrs.axis) in (-1, probs.ty.ndim - 1)):
            return None
        masked = self._bound(probs.args[0])
        if not (is_op(masked, "relax.where")
                and scalar_constant(self._bound(masked.args[1])) == -math.inf):
            return None
        dropped, scaled = self._bound(masked.args[0]), self._bound(masked.args[2])
        if not (is_op(dropped, "relax.bitwise_not") and is_op(scaled, "relax.multiply")):
            return None
        scale = scalar_constant(self._bound(scaled.args[1]))
        scores = self._bound(scaled.args[0])
        if scale is None or not is_op(scores, "relax.reshape"):
            return None
        scores = self._bound(scores.args[0])
        if not is_op(scores, "relax.matmul"):
            return None
        q, flat_keys = scores.args[0], self._bound(scores.args[1])
        transposed = self._bound(flat_keys.args[0]) if is_op(flat_keys, "relax.reshape") else None
        if not self.permutes(transposed, [0, 1, 3, 2]):
            return None
        keys = transposed.args[0]
        shape = _static(keys.ty.shape.values[2:]) if keys.ty.ndim == 4 else None
        if shape is None or q.ty.ndim != 3 or q.ty.dtype != "float32":
            return None
        positions = self._positions(self._bound(dropped.args[0]), shape[0])
        return None if positions is None else (q, keys, values, positions, scale)

    def _positions(self, keep: relax.Expr, n: int) -> relax.Expr | None:
        """positions when `keep` is less_equal(expand_dims(arange(0, n, 1), 0),
        expand_dims(positions (M,) int64, 1)), else None."""
        if not is_op(keep, "relax.less_equal"):
            return None
        slots, positions = self._bound(keep.args[0]), self._bound(keep.args[1])
        if not (is_op(slots, "relax.expand_dims") and is_op(positions, "relax.expand_dims")
                and [int(a) for a in slots.attrs.axis] == [0]
                and [int(a) for a in positions.attrs.axis] == [1]):
            return None
        arange = self._bound(slots.args[0])
        if not (is_op(arange, "relax.arange")
                and [int(arg.value) for arg in arange.args] == [0, n, 1]):
            return None
        positions = positions.args[0]
        if positions.ty.ndim != 1 or positions.ty.dtype != "int64":
            return None
        return positions


@tvm.transform.module_pass(opt_level=0, name="CachedAttention")
class CachedAttention(KernelPass):
    """Masked attention over a (B, H, N, E) cache up to each query's position -> one kernel."""

    rewriter = _Rewriter
