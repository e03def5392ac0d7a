"""broadcast_to a tensor's own shape -> the tensor.

torch.export writes `expand` before each batched matmul operand (the attention's queries, its
probabilities, the value caches), and most expand to the shape they already have; legalized,
each is a copy of its whole input: for Whisper's decoder the 448-slot value cache of every
layer, every step. Nothing reads a tensor's storage but through its shape, so the copy can go.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.passes.rewriting import FunctionRewriter, is_op


@mutator
class _Remover(FunctionRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not is_op(call, "relax.broadcast_to"):
            return call
        source = call.args[0]
        have, want = source.ty, call.ty
        tensors = all(isinstance(info, relax.TensorType) for info in (have, want))
        if not (tensors and have.shape is not None and want.shape is not None
                and have.dtype == want.dtype and have.ndim == want.ndim):
            return call
        analyzer = tvm.sym.Analyzer()
        same = all(analyzer.can_prove_equal(a, b)
                   for a, b in zip(have.shape.values, want.shape.values, strict=True))
        return source if same else call


@tvm.transform.module_pass(opt_level=0, name="IdentityBroadcast")
class IdentityBroadcast:
    """Removes each broadcast_to whose input already has the target shape."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _Remover(mod).transform()
