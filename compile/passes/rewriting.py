"""What every rewrite pass builds on: matching Relax ops, following bindings, adding each kernel
once, and running a rewrite for a target as a module pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

import tvm
from tvm import relax, tirx
from tvm.relax.expr_functor import PyExprMutator
from tvm.target import Target

from tinyasr.compile.kernels.im2col import im2col_kernel
from tinyasr.compile.kernels.tunable import KernelChoices, Tunable


def is_op(expr: relax.Expr | None, name: str) -> TypeGuard[relax.Call]:
    return isinstance(expr, relax.Call) and expr.op == tvm.ir.Op.get(name)


Bound = Callable[[relax.Expr], relax.Expr]   # a variable -> the expression bound to it


def dtype_suffix(dtype: str) -> str:
    """A kernel name's mark of a float16 variant: "" for float32, "_f16" for float16."""
    return "" if dtype == "float32" else "_f16"


def split_part(y: relax.Expr, bound: Bound) -> tuple[relax.Call, int] | None:
    """(the split, y's first column in its input) when `y` is split(x (B, T, W), ...,
    axis=2)[i] with static sections, else None."""
    item = bound(y)
    if not isinstance(item, relax.TupleGetItem):
        return None
    split = bound(item.tuple_value)
    if not (is_op(split, "relax.split") and int(split.attrs.axis) in (2, -1)
            and split.args[0].ty.ndim == 3):
        return None
    sections = split.attrs.indices_or_sections
    if isinstance(sections, tvm.tirx.IntImm):   # n equal parts
        width = split.args[0].ty.shape.values[2]
        if not isinstance(width, tvm.tirx.IntImm):
            return None
        return split, item.index * int(width) // int(sections)
    return split, [0, *(int(index) for index in sections)][item.index]


def provable_for_sizes(condition: tvm.ir.Expr, size: tvm.ir.Expr) -> bool:
    """Whether `condition` holds for every value of the symbolic variables of `size`, each a
    size (never negative)."""
    analyzer = tvm.sym.Analyzer()
    for var in tvm.tirx.analysis.undefined_vars(size):
        # Range converts ints; TVM declares it Expr-only
        analyzer.bind(var, tvm.ir.Range(0, 1 << 40))  # pyright: ignore[reportArgumentType]
    return analyzer.can_prove(condition)


def scalar_constant(expr: relax.Expr) -> float | None:
    """The value of a scalar constant, else None."""
    if isinstance(expr, tvm.ir.expr.GenericConst) and expr.value.numpy().size == 1:
        return float(expr.value.numpy())
    return None


def static_sizes(expr: relax.Expr) -> list[int | None] | None:
    """A tensor's sizes, None for a symbolic one; None for an unknown shape."""
    if expr.ty.shape is None:
        return None
    return [int(d) if isinstance(d, tvm.tirx.IntImm) else None for d in expr.ty.shape.values]


def prim_number(expr: relax.Expr) -> float | None:
    """The number a scalar argument (a clip's bounds) holds, else None."""
    value = getattr(expr, "value", None)
    return float(value) if isinstance(value, (int, float)) else None


class FunctionRewriter(PyExprMutator):
    """Base of the rewrites: visits every Relax function of `mod`; each kernel added once, a
    tunable one with the parameters `choices` has for it."""

    def __init__(self, mod: tvm.IRModule, choices: KernelChoices | None = None):
        super().__init__(mod)
        self.mod, self.kernels = mod, {}
        self.choices = choices or KernelChoices()

    def transform(self) -> tvm.IRModule:
        for gvar, function in self.mod.functions.items():
            if isinstance(function, relax.Function):
                self.before_function(function)
                self.builder_.update_func(gvar, self.visit_expr(function))
        return self.builder_.get()

    def before_function(self, function: relax.Function) -> None:
        """Called with each function, unchanged, before it is visited (a rewrite that plans
        on whole-function facts, such as use counts, overrides it)."""

    def _bound(self, expr: relax.Expr) -> relax.Expr:
        """The expression bound to a variable (through aliases: `lv5 = lv3`); a function
        parameter or any other expression is itself."""
        while isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            if bound is None:
                return expr
            expr = bound
        return expr

    def _kernel(self, name: str, make: Callable[[], tirx.PrimFunc]) -> relax.GlobalVar:
        """The kernel `name` (its name says its every parameter), made on first use."""
        if name not in self.kernels:
            self.kernels[name] = self.builder_.add_func(make(), name)
        return self.kernels[name]

    def _tunable(self, tunable: Tunable) -> relax.GlobalVar:
        """The kernel of a template, made on first use with the parameters chosen for it."""
        return self._kernel(tunable.name, lambda: self.choices.make(tunable))

    def conv_columns(self, x: relax.Expr, conv: relax.Call) -> relax.Var:
        """The im2col (OH * OW, KH * KW * C) of `conv`'s channels-last input `x` (x's dtype),
        in the order of its flattened OHWI weight."""
        width, channels = (int(d) for d in x.ty.shape.values[2:])
        _, kh, kw, _ = (int(d) for d in conv.args[1].ty.shape.values)
        strides = tuple(int(s) for s in conv.attrs.strides)
        _, out_h, out_w, _ = conv.ty.shape.values
        dtype = x.ty.dtype
        kernel = self._kernel(
            f"im2col_{dtype}_{channels}x{width}_k{kh}x{kw}_s{strides[0]}x{strides[1]}",
            lambda: im2col_kernel(dtype, channels, width, (kh, kw), strides))
        return self.builder_.emit(relax.call_tir(
            kernel, [x], relax.TensorType([out_h * out_w, kh * kw * channels], dtype)))

    def conv1d_columns(self, conv: relax.Call) -> relax.Var:
        """The im2col (OW, K * C) of a channels-last conv1d's input (x's dtype; NWC / WIO, batch
        1, static width): x padded and seen as a (1, W, 1, C) image under a (K, 1) kernel, so
        the columns are in the order of the WIO weight flattened to (K * C, O)."""
        taps, channels, _ = (int(d) for d in conv.args[1].ty.shape.values)
        before, after = (int(p) for p in conv.attrs.padding)
        x = conv.args[0]
        if before or after:
            x = self.builder_.emit(relax.op.nn.pad(x, [0, 0, before, after, 0, 0]))
        height = int(x.ty.shape.values[1])
        image = self.builder_.emit(relax.op.reshape(x, [1, height, 1, channels]))
        stride = int(conv.attrs.strides[0])
        out_w = int(conv.ty.shape.values[1])
        dtype = x.ty.dtype
        kernel = self._kernel(f"im2col_{dtype}_{channels}x1_k{taps}x1_s{stride}x1",
                              lambda: im2col_kernel(dtype, channels, 1, (taps, 1), (stride, 1)))
        return self.builder_.emit(relax.call_tir(
            kernel, [image], relax.TensorType([out_w, taps * channels], dtype)))


def plain_channels_last(conv: relax.Call) -> bool:
    """A conv2d in NHWC / OHWI (as ConvertLayout leaves them), batch 1, one group, no padding
    or dilation: what im2col + a matmul kernel computes."""
    attrs = conv.attrs
    batch = conv.args[0].ty.shape.values[0]
    return (attrs.data_layout == "NHWC" and attrs.kernel_layout == "OHWI"
            and attrs.out_layout == "NHWC" and int(attrs.groups) == 1
            and all(int(p) == 0 for p in attrs.padding)
            and all(int(d) == 1 for d in attrs.dilation)
            and isinstance(batch, tvm.tirx.IntImm) and int(batch) == 1)


class KernelPass:
    """A module pass running `rewriter`, a FunctionRewriter made for `target` (whose kernels
    it picks: the dot ISA, the vector unit) and the tuned kernel parameters `choices`."""

    # a FunctionRewriter subclass
    rewriter: Callable[[tvm.IRModule, Target, KernelChoices | None], FunctionRewriter]

    def __init__(self, target: Target, choices: KernelChoices | None = None):
        self.target, self.choices = target, choices

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return self.rewriter(mod, self.target, self.choices).transform()
