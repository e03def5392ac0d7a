"""fp32 matmuls of two activations, batched, become compile/batched_kernels.py's kernel.

Pattern: matmul(x (B, M, K) f32, y (B, K, N) f32), one batch size, neither a weight (the
attention's per-head scores and context, in the encoder and the decoder). Rewrite:
call_tir(the kernel, x, y), the fixed-width kernel when N is static (the context), the symbolic
one otherwise (the scores). When y is a broadcast over the leading axis of a (1, G..., K, N)
tensor reshaped to B batches (the decoder's cross-attention keys and values, the same for
every hypothesis), the kernel reads the (G, K, N) original instead and the broadcast copy goes.
A softmax along the last axis of the scores moves into the scores kernel, which takes each row's
softmax while the row is in cache; so does the mask before it, where(not(expand_dims(keep, 1)),
-1e9, scores) (the decoder's causal self-attention, one mask per hypothesis for its heads).
Run it after the weight-matmul passes, which take the matmuls on weights.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.batched_kernels import batched_matmul_kernel, fixed_width_supported
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.int8_matmul import KernelPass, is_op
from tinyasr.compile.softmax_kernels import MASKED_SCORE


@mutator
class _Rewriter(Fp32KernelRewriter):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if is_op(call, "relax.nn.softmax"):
            return self._with_softmax(call)
        if not is_op(call, "relax.matmul"):
            return call
        x, y = call.args
        three_d = all(len(a.ty.shape.values) == 3 for a in (x, y, call))
        if not (three_d and tvm_ffi.structural_equal(x.ty.shape.values[0], y.ty.shape.values[0])
                and all(a.ty.dtype == "float32" for a in (x, y, call))
                and not any(self.is_fp32_weight(a) for a in (x, y))):
            return call
        y = self._unbroadcast(y)
        n = call.ty.shape.values[2]
        width = int(n) if isinstance(n, tvm.tirx.IntImm) else None
        if width is not None and not fixed_width_supported(self.unit, width):
            width = None
        name = f"batched_matmul_{self.unit.lanes}" + ("" if width is None else f"_n{width}")
        kernel = self._kernel(name, lambda: batched_matmul_kernel(self.unit, width))
        return relax.call_tir(kernel, [x, y], call.ty)

    def _with_softmax(self, softmax: relax.Call) -> relax.Expr:
        """softmax(scores) along the last axis, scores a (reshaped) symbolic-width kernel
        call, maybe masked first -> the kernel that takes each row's softmax as it computes
        the row (masking it first)."""
        ndim = len(softmax.ty.shape.values)
        source = self._bound(softmax.args[0])
        masked = is_op(source, "relax.where")
        keep = self._mask(source) if masked else None
        if masked:
            source = self._bound(source.args[2])
        reshape = source if is_op(source, "relax.reshape") else None
        scores = self._bound(reshape.args[0]) if reshape is not None else source
        symbolic = self.kernels.get(f"batched_matmul_{self.unit.lanes}")
        if not (int(softmax.attrs.axis) % ndim == ndim - 1 and symbolic is not None
                and is_op(scores, "relax.call_tir") and scores.args[0].same_as(symbolic)
                and (keep is not None or not masked)):
            return softmax
        kernel = self._kernel(
            f"batched_matmul_{self.unit.lanes}_{'masked_' if masked else ''}softmax",
            lambda: batched_matmul_kernel(self.unit, softmax=True, masked=masked))
        inputs = [*scores.args[1].fields, *([keep] if masked else [])]
        fused = relax.call_tir(kernel, inputs, scores.ty)
        return relax.op.reshape(fused, reshape.args[1]) if reshape is not None else fused

    def _mask(self, where: relax.Call) -> relax.Expr | None:
        """keep (hypotheses, M, N) bool when `where` is where(not(expand_dims(keep, 1)),
        MASKED_SCORE, scores): attention's masked_fill, the mask shared by the heads."""
        condition, fill = self._bound(where.args[0]), self._bound(where.args[1])
        inverted = self._bound(condition.args[0]) if is_op(condition, "relax.bitwise_not") else None
        if not (is_op(inverted, "relax.expand_dims") and isinstance(fill, tvm.ir.expr.GenericConst)
                and [int(axis) for axis in inverted.attrs.axis] == [1]
                and fill.value.numpy().size == 1 and float(fill.value.numpy()) == MASKED_SCORE):
            return None
        keep = inverted.args[0]
        return keep if keep.ty.ndim == 3 and keep.ty.dtype == "bool" else None

    def _unbroadcast(self, y: relax.Expr) -> relax.Expr:
        """(G, K, N) when y = reshape(broadcast_to(t (1, G..., K, N), (A, G..., K, N)),
        (A * G, K, N)); else y."""
        reshaped = self._bound(y)
        broadcast = self._bound(reshaped.args[0]) if is_op(reshaped, "relax.reshape") else None
        if not is_op(broadcast, "relax.broadcast_to"):
            return y
        source = broadcast.args[0]
        source_shape = source.ty.shape.values if source.ty.shape is not None else None
        target_shape = broadcast.ty.shape.values
        if not (source_shape and len(source_shape) == len(target_shape) >= 3
                and isinstance(source_shape[0], tvm.tirx.IntImm) and int(source_shape[0]) == 1
                and all(tvm_ffi.structural_equal(a, b)
                        for a, b in zip(source_shape[1:], target_shape[1:]))):
            return y
        groups = 1
        for extent in source_shape[1:-2]:
            groups *= extent
        return self.builder_.emit(relax.op.reshape(source, [groups, *source_shape[-2:]]))


@tvm.transform.module_pass(opt_level=0, name="BatchedMatmul")
class BatchedMatmul(KernelPass):
    """Batched fp32 matmuls of activations -> the batched kernel."""

    rewriter = _Rewriter
