"""Give the VM the symbolic sizes it cannot read off the input tensors.

The encoder's waveform is (1, 640*F + 720) samples. The VM checks an input's shape by matching
each dimension, and it can only *bind* a symbolic variable from a dimension that is the bare
variable; it cannot solve 640*F + 720 = n for F. This pass prepends one `R.Shape([F, ...])`
input holding every such variable, so the caller states F and the VM checks the waveform
against it. Functions whose inputs are all bare variables are left unchanged.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.relax.analysis import tir_vars_in_type

SHAPE_INPUT = "sizes"


def _bare_dimension_vars(params: list[relax.Var]) -> set[tirx.Var]:
    return {dim for param in params if isinstance(param.ty, relax.TensorType)
            for dim in param.ty.shape.values if isinstance(dim, tirx.Var)}


def expose_shape_vars(function: relax.Function) -> relax.Function:
    """`function` with a leading R.Shape input for the variables only found inside expressions."""
    num_input = int(function.attrs["num_input"])
    inputs = list(function.params[:num_input])
    bare = _bare_dimension_vars(inputs)
    hidden = [var for param in inputs for var in tir_vars_in_type(param.ty) if var not in bare]
    hidden = list(dict.fromkeys(hidden))
    if not hidden:
        return function
    sizes = relax.Var(SHAPE_INPUT, relax.ShapeType(hidden))
    exposed = relax.Function([sizes, *function.params], function.body, function.ret_ty,
                             function.is_pure, function.attrs)
    # TVM declares with_attr to return a BaseFunc, not the function's own class
    return exposed.with_attr("num_input", num_input + 1)  # pyright: ignore[reportReturnType]


@tvm.transform.module_pass(opt_level=0, name="ExposeShapeVars")
class ExposeShapeVars:
    """Applies `expose_shape_vars` to every Relax function with a "num_input" attribute."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        functions = {gvar: expose_shape_vars(function) if _has_inputs(function) else function
                     for gvar, function in mod.functions.items()}
        return tvm.IRModule(functions, attrs=mod.attrs)


def _has_inputs(function: tvm.ir.BaseFunc) -> bool:
    return isinstance(function, relax.Function) and "num_input" in function.attrs
