"""fp32 matmuls of two activations, batched, become compile/kernels/batched.py's kernel.

Pattern: matmul(x (B, M, K) f32, y (B, K, N) f32), one batch size, neither a weight (the
attention's per-head scores and context, in the encoder and the decoder). Rewrite:
call_tir(the kernel, x, y), the fixed-width kernel when N is static (the context), the symbolic
one otherwise (the scores). When y is a broadcast over the leading axis of a (1, G..., K, N)
tensor reshaped to B batches (the decoder's cross-attention keys and values, the same for
every hypothesis), the kernel reads the (G, K, N) original instead and the broadcast copy goes.
When y is such a (possibly broadcast) view of permute_dims(t) with t's last two axes swapped
(the scores against the decoder's key caches, (B or 1, heads, frames, head_dim), which torch
exports as k.transpose(-1, -2)), the transposed kernel reads t's (N, K) rows as stored and the
transposed copy goes: that copy of the 1500-frame cross-attention keys, made every step, cost
Whisper tiny.en's int8 decoder 3.4 of its 13.6 ms a step (one hypothesis, one thread, Xeon).
When that original is astype(t16, float32) of a float16 t16 (the Whisper step's cross-attention
keys and values, stored as float16 by an int8 build: compile/whisper_graphs.py), the kernels
read t16 and widen it in registers: no float32 copy is made.
Run it after the weight-matmul passes, which take the matmuls on weights, and after
FusedAttention, which takes whole attentions (their scores, softmax and context in one kernel):
this pass is for the activation matmuls that pattern does not cover.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.batched import (
    batched_matmul_kernel,
    batched_matmul_transposed_kernel,
    fixed_width_supported,
    transposed_supported,
)
from tinyasr.compile.passes.fp32_matmul import Fp32KernelRewriter
from tinyasr.compile.passes.rewriting import KernelPass, dtype_suffix, is_op


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
        transposed = self._transposed_source(y)
        if transposed is not None:
            depth = int(y.ty.shape.values[1])
            source, dtype = self._stored(transposed)
            name = f"batched_matmul_t_{self.unit.lanes}_k{depth}{dtype_suffix(dtype)}"
            kernel = self._kernel(name,
                                  lambda: batched_matmul_transposed_kernel(self.unit, depth,
                                                                           dtype))
            return relax.call_tir(kernel, [x, source], call.ty)
        y = self._unbroadcast(y)
        n = call.ty.shape.values[2]
        width = int(n) if isinstance(n, tvm.tirx.IntImm) else None
        if width is not None and not fixed_width_supported(self.unit, width):
            width = None
        source, dtype = self._stored(y) if width is not None else (y, "float32")
        name = (f"batched_matmul_{self.unit.lanes}" + ("" if width is None else f"_n{width}")
                + dtype_suffix(dtype))
        kernel = self._kernel(name, lambda: batched_matmul_kernel(self.unit, width, dtype))
        return relax.call_tir(kernel, [x, source], call.ty)

    def _stored(self, y: relax.Expr) -> tuple[relax.Expr, str]:
        """(t16 reshaped as y, "float16") when y is astype(t16, float32) of a float16 t16,
        or a reshape of that; else (y, "float32")."""
        bound = self._bound(y)
        reshaped = is_op(bound, "relax.reshape")
        cast = self._bound(bound.args[0]) if reshaped else bound
        if not (is_op(cast, "relax.astype") and cast.args[0].ty.dtype == "float16"):
            return y, "float32"
        source = cast.args[0]
        if reshaped:
            source = self.builder_.emit(relax.op.reshape(source, y.ty.shape))
        return source, "float16"

    def _transposed_source(self, y: relax.Expr) -> relax.Expr | None:
        """(G, N, K) when y = reshape(broadcast_to(permute_dims(t, last two axes swapped),
        (A, G..., K, N)), (A * G, K, N)), t (1 or A, G..., N, K), K whole vectors: t itself
        reshaped (G = A * G... when t has A rows, G... when it has one and every batch
        shares it); else None. The transposed kernel then reads t's rows as stored."""
        depth = y.ty.shape.values[1]
        if not (isinstance(depth, tvm.tirx.IntImm)
                and transposed_supported(self.unit, int(depth))):
            return None
        reshaped = self._bound(y)
        if not is_op(reshaped, "relax.reshape"):
            return None
        inner = self._bound(reshaped.args[0])
        if inner.ty.shape is None:
            return None
        target_shape = list(inner.ty.shape.values)
        if is_op(inner, "relax.broadcast_to"):
            inner = self._bound(inner.args[0])
        rank = len(target_shape)
        if not (rank >= 3 and self.permutes(inner, [*range(rank - 2), rank - 1, rank - 2])):
            return None
        source = inner.args[0]
        shape = source.ty.shape.values if source.ty.shape is not None else None
        if shape is None or len(shape) != rank:
            return None
        leading, groups = shape[0], 1
        for extent in shape[1:-2]:
            groups *= extent
        same_rows = tvm_ffi.structural_equal(leading, target_shape[0])
        shared = isinstance(leading, tvm.tirx.IntImm) and int(leading) == 1
        if not (all(tvm_ffi.structural_equal(a, b) for a, b in
                    zip(shape[1:], [*target_shape[1:-2], target_shape[-1], target_shape[-2]],
                        strict=True))
                and (same_rows or shared)):
            return None
        rows = groups if shared and not same_rows else leading * groups
        return self.builder_.emit(relax.op.reshape(source, [rows, shape[-2], shape[-1]]))

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
