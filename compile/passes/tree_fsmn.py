"""The decoder's FSMN over a prefix tree: one kernel reading each node's window through its
index, instead of a gathered copy of every window.

Pattern (model/network/san_m.py `_tree_memory`; an int8 model rounds the convolution's input to
int8 at one scale for the whole tensor first, model/network/int8.py):

    g = take(rows (N, d), index (U, K), axis=0)              (U, K, d): each node's K rows
    s = ...(max(abs(g)))                                      a scalar (int8 models)
    q = e_n(...e_1(g, s)...)                                  ops applied to each element, their
                                                              other operands scalars (or none)
    y = conv1d(q, W (K, 1, d), groups=d, NWC / WIO)           (U, 1, d), no padding, stride 1

Rewrite:

    max(abs(g))  -> call_tir(gather_abs_max, rows, index)     the maximum of the same values
    q' = e_n(...e_1(rows, s)...)                              (N, d): an op on each element
                                                              commutes with a gather
    y = call_tir(tree_fsmn, q', index, W)                     compile/kernels/tree_fsmn.py

The (U, K, d) windows (and their rounded copy) were the decoder's largest tensors: 2.9 MB each
for the 457 nodes of a 20 s utterance's 10-best tree. The rounding now runs on N rows instead
of U * K.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator
from tvm.target import Target

from tinyasr.compile.kernels.fp32 import vector_unit
from tinyasr.compile.kernels.tree_fsmn import gather_abs_max_kernel, tree_fsmn_kernel
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.rewriting import FunctionRewriter, KernelPass, is_op

# Ops on each element that may sit between the gather and the convolution; a binary one's
# other operand must be a scalar, clip's bounds are values.
ELEMENTWISE = ("relax.divide", "relax.multiply", "relax.add", "relax.subtract", "relax.round",
               "relax.clip")


def _is_scalar(expr: relax.Expr) -> bool:
    ty = expr.ty
    return not isinstance(ty, relax.TensorType) or ty.ndim == 0


def _gather(expr: relax.Expr) -> tuple[relax.Expr, relax.Expr] | None:
    """(rows, index) of take(rows (N, d) f32, index (U, K) int64, axis=0), else None."""
    if not is_op(expr, "relax.take") or int(expr.attrs.axis) != 0:
        return None
    rows, index = expr.args
    if (rows.ty.ndim != 2 or rows.ty.dtype != "float32" or index.ty.ndim != 2
            or index.ty.dtype != "int64" or not isinstance(rows.ty.shape.values[1], tvm.tirx.IntImm)
            or not isinstance(index.ty.shape.values[1], tvm.tirx.IntImm)):
        return None
    return rows, index


def _depthwise_window_conv(conv: relax.Call) -> bool:
    """conv1d NWC / WIO, one channel per group, no padding, stride or dilation, f32."""
    attrs = conv.attrs
    weight = conv.args[1].ty
    channels = weight.shape.values[2]
    return (attrs.data_layout == "NWC" and attrs.kernel_layout == "WIO"
            and attrs.out_layout == "NWC" and isinstance(channels, tvm.tirx.IntImm)
            and int(attrs.groups) == int(channels) and int(weight.shape.values[1]) == 1
            and all(int(p) == 0 for p in attrs.padding)
            and all(int(s) == 1 for s in attrs.strides)
            and all(int(d) == 1 for d in attrs.dilation) and conv.ty.dtype == "float32")


@mutator
class _Rewriter(FunctionRewriter):
    def __init__(self, mod: tvm.IRModule, target: Target, choices: KernelChoices | None = None):
        super().__init__(mod, choices)
        self.unit = vector_unit(target)

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        rewritten = None
        if is_op(call, "relax.nn.conv1d") and _depthwise_window_conv(call):
            rewritten = self._tree_fsmn(call)
        elif is_op(call, "relax.max") and call.ty.ndim == 0:
            rewritten = self._gather_abs_max(call)
        return call if rewritten is None else rewritten

    def _gather_abs_max(self, peak: relax.Call) -> relax.Expr | None:
        absolute = self._bound(peak.args[0])
        gather = _gather(self._bound(absolute.args[0])) if is_op(absolute, "relax.abs") else None
        if gather is None:
            return None
        rows, index = gather
        dim, taps = int(rows.ty.shape.values[1]), int(index.ty.shape.values[1])
        kernel = self._kernel(f"gather_abs_max_d{dim}_k{taps}",
                              lambda: gather_abs_max_kernel(self.unit, dim, taps))
        return relax.call_tir(kernel, [rows, index], relax.TensorType([], "float32"))

    def _tree_fsmn(self, conv: relax.Call) -> relax.Expr | None:
        chain: list[tuple[relax.Call, int]] = []   # the elementwise ops, outermost first
        expr = self._bound(conv.args[0])
        while isinstance(expr, relax.Call) and any(is_op(expr, name) for name in ELEMENTWISE):
            tensors = [i for i, arg in enumerate(expr.args) if not _is_scalar(arg)]
            if len(tensors) != 1:
                return None
            chain.append((expr, tensors[0]))
            expr = self._bound(expr.args[tensors[0]])
        gather = _gather(expr)
        weight = conv.args[1]
        if gather is None:
            return None
        rows, index = gather
        dim, taps = int(rows.ty.shape.values[1]), int(index.ty.shape.values[1])
        if int(weight.ty.shape.values[0]) != taps or int(weight.ty.shape.values[2]) != dim:
            return None
        for call, position in reversed(chain):   # the same ops on the rows, innermost first
            args = list(call.args)
            args[position] = rows
            rows = self.builder_.emit(relax.Call(call.op, args, call.attrs))
        kernel = self._kernel(f"tree_fsmn_d{dim}_k{taps}",
                              lambda: tree_fsmn_kernel(self.unit, dim, taps))
        return relax.call_tir(kernel, [rows, index, weight], conv.ty)


@tvm.transform.module_pass(opt_level=0, name="TreeFsmn")
class TreeFsmn(KernelPass):
    rewriter = _Rewriter
