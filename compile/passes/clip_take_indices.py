"""Gathers clip their indices: the caller's indices are not trusted.

The torch importer gathers (embedding lookups, tensor indexing) with `take(..., mode="fast")`,
which reads out of bounds, and may crash, on a bad index (TVM warns about it at every build).
The decode graph's indices are the caller's: token ids and the prefix tree's depths and FSMN
history rows. With mode "clip" a bad index reads a wrong row but never outside the tensor, for
a min and a max per index.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.passes.rewriting import FunctionRewriter, is_op


@mutator
class _Rewriter(FunctionRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not (is_op(call, "relax.take") and call.attrs.mode == "fast"):
            return call
        return relax.op.take(call.args[0], call.args[1], call.attrs.axis, mode="clip")


@tvm.transform.module_pass(opt_level=0, name="ClipTakeIndices")
class ClipTakeIndices:
    """Every `take` in "fast" mode -> "clip"."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _Rewriter(mod).transform()
