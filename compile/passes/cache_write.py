"""A key/value cache written in place at the step's positions, not copied whole.

Pattern (how compile/pipeline.py imports Whisper's `index_copy` cache write):

    scatter_elements(cache, broadcast_to(reshape(positions (t,), (1, 1, t, 1)), source.shape),
                     source (batch, heads, t, d_head), axis=2, reduction="update")
        `cache` (batch, heads, slots, d_head) f32 an input of the function (not a weight)
        that nothing else reads
Rewrite:

    call_tir_inplace(cache_write kernel, cache, positions, source)    compile/kernels/cache_write.py

scatter_elements returns a new tensor: the whole cache copied, then t rows written (1.1 ms of
an 8 ms int8 Whisper step for 8 caches of 448 slots). In place, the step's output is its
input tensor with the rows written: a caller that passes the returned caches to the next
step (targets/host/whisper_runner.py, tinyasr-run) sees the same values; a caller that kept
the input cache to reuse sees it updated too (compile/whisper_graphs.py says so).
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator
from tvm.target import Target

from tinyasr.compile.kernels.cache_write import cache_write_kernel
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.rewriting import FunctionRewriter, KernelPass, is_op


@mutator
class _Rewriter(FunctionRewriter):
    def __init__(self, mod: tvm.IRModule, _target: Target, choices: KernelChoices | None = None):
        super().__init__(mod, choices)

    def before_function(self, function: relax.Function) -> None:
        """The function's inputs (weights excluded) and how often each is read."""
        count = int(function.attrs["num_input"]) if function.attrs and (
            "num_input" in function.attrs) else len(function.params)
        self.inputs = set(function.params[:count])
        self.uses: dict[relax.Var, int] = {}

        def visit(expr: relax.Expr) -> None:
            if isinstance(expr, relax.Call):
                for arg in expr.args:
                    if isinstance(arg, relax.Var):
                        self.uses[arg] = self.uses.get(arg, 0) + 1
            elif isinstance(expr, relax.Tuple):
                for field in expr.fields:
                    if isinstance(field, relax.Var):
                        self.uses[field] = self.uses.get(field, 0) + 1

        relax.analysis.post_order_visit(function.body, visit)

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not (is_op(call, "relax.scatter_elements") and call.attrs.reduction == "update"
                and int(call.attrs.axis) == 2):
            return call
        cache, indices, source = call.args
        if not (cache in self.inputs and self.uses.get(cache) == 1
                and cache.ty.dtype == "float32" and source.ty.dtype == "float32"
                and cache.ty.ndim == 4):
            return call
        broadcast = self._bound(indices)
        if not is_op(broadcast, "relax.broadcast_to"):
            return call
        reshaped = self._bound(broadcast.args[0])
        if not is_op(reshaped, "relax.reshape"):
            return call
        positions = reshaped.args[0]
        if positions.ty.ndim != 1 or positions.ty.dtype != "int64":
            return call
        shape = reshaped.ty.shape.values
        if len(shape) != 4 or any(not isinstance(shape[i], tvm.tirx.IntImm) or int(shape[i]) != 1
                                  for i in (0, 1, 3)):
            return call
        _, heads, slots, d_head = cache.ty.shape.values
        if not all(isinstance(d, tvm.tirx.IntImm) for d in (heads, slots, d_head)):
            return call
        heads, slots, d_head = int(heads), int(slots), int(d_head)
        kernel = self._kernel(f"cache_write_{heads}x{slots}x{d_head}",
                              lambda: cache_write_kernel(heads, slots, d_head))
        return relax.call_tir_inplace(kernel, [cache, positions, source], [0], cache.ty)


@tvm.transform.module_pass(opt_level=0, name="CacheWrite")
class CacheWrite(KernelPass):
    """Key/value cache scatters -> in-place writes of the step's rows."""

    rewriter = _Rewriter
