"""Upper bounds on the symbolic sizes, so that memory is planned once for the longest input.

Without a bound, TVM's static memory planner can only share storage between tensors whose
symbolic sizes it proves equal, and the VM allocates every other intermediate at run time:
the SAN-M encoder's 31 storages of a dozen distinct sizes (the fbank's frames, the convolution's
subsampled rows, the encoder's rows) each stay in the VM's pool, so peak memory is their sum.
Given `tir_var_upper_bound` (a function attribute StaticPlanBlockMemory reads), it plans every
bounded tensor at its largest size and shares storage between tensors of any sizes whose
lifetimes do not overlap: the peak becomes the largest live set at the bound, allocated once
and reused by every call (pages never touched for shorter audio are never resident).

A planned storage is sized for the bound, so a call past it would write out of bounds: each
bounded function first calls a check (a PrimFunc compiled into the deployable, `assert size <=
bound`) that raises a ValueError naming the size instead. Callers cut longer input into windows
(model/network/windows.py) that stay inside the bound the manifest states.

Runs in the lower phase after RemovePurityChecking (the check is a call with an effect) and
before StaticPlanBlockMemory.
"""

from __future__ import annotations

from typing import cast

import tvm
from tvm import relax, tirx
from tvm.relax.analysis import tir_vars_in_type

UPPER_BOUND_ATTR = "tir_var_upper_bound"   # what StaticPlanBlockMemory reads
CHECK_SUFFIX = "_check_bounds"             # the check PrimFunc of function F is F_check_bounds


def signature_vars(function: relax.Function) -> dict[str, tirx.Var]:
    """The symbolic sizes of a function's parameters, by name."""
    return {var.name: var for param in function.params for var in tir_vars_in_type(param.ty)}


def _dtype(var: tirx.Var) -> str:
    return str(var.ty)   # a size's PrimType prints as its dtype, "int64"


def bound_check(name: str, bounded: list[tuple[tirx.Var, int]]) -> tirx.PrimFunc:
    """A PrimFunc taking each bounded size that asserts it is at most its bound."""
    params = [tirx.Var(var.name, _dtype(var)) for var, _ in bounded]
    body: tirx.Stmt = tirx.Evaluate(tirx.IntImm("int32", 0))
    for param, (var, bound) in reversed(list(zip(params, bounded, strict=True))):
        message = f"{name}: {var.name} over this deployable's bound of {bound}"
        # TVM's Python AssertStmt passes its arguments in the wrong order to the constructor
        # (kind first, the C++ takes the condition first), so the constructor is called as is.
        body = tirx.SeqStmt([tirx.stmt._ffi_api.AssertStmt(  # pyright: ignore
            param <= tirx.IntImm(_dtype(var), bound), tvm.ir.StringImm("ValueError"),
            [tvm.ir.StringImm(message)], None), body])
    check = tirx.PrimFunc(params, body).with_attr("global_symbol", name + CHECK_SUFFIX)
    return cast(tirx.PrimFunc, check)


def bound_function(function: relax.Function, check: relax.Expr,
                   bounded: list[tuple[tirx.Var, int]]) -> relax.Function:
    """`function` with the upper-bound attribute and `check` (a typed call) bound first."""
    body = cast(relax.SeqExpr, function.body)
    call = relax.VarBinding(relax.Var("bounds_checked", check.ty), check)
    checked = relax.SeqExpr([relax.BindingBlock([call]), *body.blocks], body.body)
    bounded_function = relax.Function(function.params, checked, function.ret_ty,
                                      function.is_pure, function.attrs)
    # TVM declares with_attr to return a BaseFunc, not the function's own class
    return bounded_function.with_attr(  # pyright: ignore[reportReturnType]
        UPPER_BOUND_ATTR, {var.name: bound for var, bound in bounded})


@tvm.transform.module_pass(opt_level=0, name="BoundShapeVars")
class BoundShapeVars:
    """Bounds every Relax function's symbolic sizes named in `bounds` (name -> largest value);
    functions without such a size are left unchanged."""

    def __init__(self, bounds: dict[str, int]):
        self.bounds = dict(bounds)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        builder = relax.BlockBuilder(mod)
        functions = mod.functions.items()  # pyright: ignore[reportAttributeAccessIssue]
        for gvar, function in list(functions):
            if not isinstance(function, relax.Function):
                continue
            sizes = signature_vars(function)
            bounded = [(sizes[name], bound) for name, bound in sorted(self.bounds.items())
                       if name in sizes]
            if not bounded:
                continue
            name = gvar.name_hint
            check = builder.add_func(bound_check(name, bounded), name + CHECK_SUFFIX)
            call = builder.normalize(relax.Call(check, [relax.prim_value(var)
                                                        for var, _ in bounded]))
            builder.update_func(gvar, bound_function(function, call, bounded))
        return builder.get()
