"""fp32 matmuls of two activations, batched, become compile/kernels/batched.py's kernel.

Pattern: matmul(x (B, M, K) f32, y (B, K, N) f32), one batch size, neither a weight (the
attention's per-head scores and context, in the encoder and the decoder). Rewrite:
call_tir(the kernel, x, y), the fixed-width kernel when N is static (the context), the symbolic
one otherwise (the scores). When y is a broadcast over the leading axis of a (1, G..., K, N)
tensor reshaped to B batches (the decoder's cross-attention keys and values, the same for
every hypothesis), the kernel reads the (G, K, N) original instead and the broadcast copy goes.
Run it after the weight-matmul passes, which take the matmuls on weights, and after
FusedAttention, which takes whole attentions (their scores, softmax and context in one kernel):
this pass is for the activation matmuls that pattern does not cover.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.batched import batched_matmul_kernel, fixed_width_supported
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, is_op


@mutator
class _Rewriter(Fp32KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
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
                        for a, b in zip(source_shape[1:], target_shape[1:], strict=True))):
            return y
        groups = 1
        for extent in source_shape[1:-2]:
            groups *= extent
        return self.builder_.emit(relax.op.reshape(source, [groups, *source_shape[-2:]]))


@tvm.transform.module_pass(opt_level=0, name="BatchedMatmul")
class BatchedMatmul(KernelPass):
    """Batched fp32 matmuls of activations -> the batched kernel."""

    rewriter = _Rewriter
