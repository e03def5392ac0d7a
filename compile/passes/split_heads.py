"""Attention's head split of a tensor, or of one part of a split fused projection, becomes one
copy kernel (compile/kernels/heads.py).

Pattern:

    permute_dims(reshape(y, [B, T, H, E]), [0, 2, 1, 3])      y (B, T, H*E) float32
    y = x, or y = split(x (B, T, W), sections, axis=2)[i]     (a fused projection's part)

Rewrite: call_tir(heads kernel(W, the part's first column, H, E), x) -> (B, H, T, E).
Also permute_dims(astype(reshape(y, ...), float16), ...): the kernel writes float16 (the float16
cross-attention caches of compile/whisper_graphs.py).

What is left of Whisper's decoder keys and values after FusedAttention and BatchedMatmul took
the attentions they fit: the cross-attention keys and values the encode function returns per
decoder layer (each a split of its kv projection, then two head splits: 2.2 ms a layer on the
AMD EPYC host, most of it division and modulo indexing) and a step's new self-attention rows.
Run it after those passes, whose patterns start from these permutes.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.heads import heads_kernel
from tinyasr.compile.passes.rewriting import FunctionRewriter, dtype_suffix, is_op, split_part

HEAD_ORDER = [0, 2, 1, 3]


@mutator
class _Rewriter(FunctionRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not (is_op(call, "relax.permute_dims") and call.attrs.axes is not None
                and [int(a) for a in call.attrs.axes] == HEAD_ORDER
                and call.ty.dtype in ("float32", "float16") and call.ty.ndim == 4):
            return call
        split = self._bound(call.args[0])
        if call.ty.dtype == "float16":
            if not (is_op(split, "relax.astype") and split.args[0].ty.dtype == "float32"):
                return call
            split = self._bound(split.args[0])
        if not is_op(split, "relax.reshape"):
            return call
        part = split_part(split.args[0], self._bound)
        source, offset = (part[0].args[0], part[1]) if part else (split.args[0], 0)
        shape, source_shape = split.ty.shape, source.ty.shape
        if shape is None or source_shape is None or source.ty.ndim != 3:
            return call
        batch, rows, heads, head_dim = shape.values
        analyzer = tvm.sym.Analyzer()
        if not (isinstance(heads, tvm.tirx.IntImm) and isinstance(head_dim, tvm.tirx.IntImm)
                and isinstance(source_shape.values[2], tvm.tirx.IntImm)
                and analyzer.can_prove_equal(batch, source_shape.values[0])
                and analyzer.can_prove_equal(rows, source_shape.values[1])):
            return call
        width = int(source_shape.values[2])
        heads, head_dim = int(heads), int(head_dim)
        dtype = call.ty.dtype
        kernel = self._kernel(f"heads_w{width}_at{offset}_h{heads}x{head_dim}"
                              f"{dtype_suffix(dtype)}",
                              lambda: heads_kernel(width, offset, heads, head_dim, dtype))
        return relax.call_tir(kernel, [source], call.ty)

@tvm.transform.module_pass(opt_level=0, name="SplitHeads")
class SplitHeads:
    """Head splits (of fused projections' parts) -> one copy kernel each."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _Rewriter(mod).transform()
