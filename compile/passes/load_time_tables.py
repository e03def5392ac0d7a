"""Weights the deployable computes when it is loaded instead of storing them.

LiftWeightTransforms leaves `<function>_transform_params`: the raw weights (one tuple) -> the
weights the function takes. Some raw weights are tables a kernel computes from nothing (the
fbank's window, DFT and mel matrices: compile/kernels/fbank_tables.py). For each function whose
weights include some that depend on such tables alone (a table, or a layout of it), this pass
adds `<function>_tables`: no inputs, those weights as a tuple. Its bindings are the transform's
own for them, each table's raw value made by a call of its kernel. Its attribute
`tinyasr.table_outputs` says which outputs of the transform it returns; the compiler leaves
those out of the weights file (pipeline.run_weight_transforms), and a runner calls the function
once when it loads the deployable (manifest "tables"). Constant folding, which would compute the
tables at compile time and store them in the library, is kept out of the table functions
(`FoldConstantOutsideTables`).
"""

from __future__ import annotations

from collections.abc import Mapping

import tvm
from tvm import relax, tirx
from tvm.relax.analysis import free_vars

from tinyasr.compile.passes.lift_weight_transforms import TRANSFORM_SUFFIX

TABLES_SUFFIX = "_tables"
OUTPUTS_ATTR = "tinyasr.table_outputs"


def _table_function(transform: relax.Function, kernels: Mapping[str, tvm.ir.GlobalVar]
                    ) -> relax.Function | None:
    """The table function of one transform, or None when none of its outputs is a table's."""
    (raw,) = transform.params
    body = transform.body
    bindings = [binding for block in body.blocks for binding in block.bindings]
    depends: dict[relax.Var, frozenset[int]] = {}     # var -> the raw weights it is made of
    kernel_of: dict[relax.Var, tvm.ir.GlobalVar] = {}
    for binding in bindings:
        value = binding.value
        if isinstance(value, relax.TupleGetItem) and value.tuple_value.same_as(raw):
            depends[binding.var] = frozenset([value.index])
            if binding.var.name in kernels:
                kernel_of[binding.var] = kernels[binding.var.name]
        else:
            depends[binding.var] = frozenset().union(
                *(depends.get(var, frozenset()) for var in free_vars(value)))
    tables = {next(iter(depends[var])) for var in kernel_of}
    bound = {binding.var: binding.value for binding in bindings}
    output = bound.get(body.body, body.body)
    if not tables or not isinstance(output, relax.Tuple):
        return None
    chosen = [index for index, field in enumerate(output.fields)
              if depends.get(field) and depends[field] <= tables]
    if not chosen:
        return None
    needed = [binding for binding in bindings
              if depends[binding.var] and depends[binding.var] <= tables]
    made = [relax.VarBinding(binding.var,
                             relax.call_tir(kernel_of[binding.var], [], binding.var.ty))
            if binding.var in kernel_of else binding for binding in needed]
    fields = [output.fields[index] for index in chosen]
    result = relax.Var("tables", relax.TupleType([field.ty for field in fields]))
    block = relax.DataflowBlock([*made, relax.VarBinding(result, relax.Tuple(fields))])
    function = relax.Function([], relax.SeqExpr([block], result), result.ty, is_pure=True)
    return function.with_attrs({"num_input": 0,   # pyright: ignore[reportReturnType]
                                OUTPUTS_ATTR: chosen})


def add_table_functions(mod: tvm.IRModule, kernels: Mapping[str, tirx.PrimFunc]
                        ) -> tvm.IRModule:
    """`mod` with a `<function>_tables` beside each `<function>_transform_params` some of whose
    outputs are tables of `kernels` (raw weight name -> kernel writing it), and the kernels."""
    builder = relax.BlockBuilder(mod)
    # IRModule.functions is reflected from C++, not declared in Python
    names = [gvar.name_hint for gvar in mod.functions]  # pyright: ignore[reportAttributeAccessIssue]
    added: dict[str, tvm.ir.GlobalVar] = {}

    def kernel(name: str) -> tvm.ir.GlobalVar:
        if name not in added:
            added[name] = builder.add_func(kernels[name], name.removeprefix("p_") + "_table")
        return added[name]

    for name in names:
        if not name.endswith(TRANSFORM_SUFFIX):
            continue
        transform = mod[name]
        used = {binding.var.name for block in transform.body.blocks
                for binding in block.bindings} & set(kernels)
        function = _table_function(transform, {table: kernel(table) for table in sorted(used)})
        if function is not None:   # public: a runner calls it, nothing in the module does
            table_name = name.removesuffix(TRANSFORM_SUFFIX) + TABLES_SUFFIX
            builder.add_func(function.with_attr("global_symbol", table_name), table_name)
    return builder.get()


@tvm.transform.module_pass(opt_level=0, name="LoadTimeTables")
class LoadTimeTables:
    """Adds the table functions of `kernels` (raw weight name -> PrimFunc); see the module."""

    def __init__(self, kernels: Mapping[str, tirx.PrimFunc]):
        self.kernels = dict(kernels)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext
                         ) -> tvm.IRModule:
        return add_table_functions(mod, self.kernels)


@tvm.transform.module_pass(opt_level=0, name="FoldConstantOutsideTables")
class FoldConstantOutsideTables:
    """relax.transform.FoldConstant on every function but the table functions: a table kernel
    takes no input, so the folder would run it and store its output in the library."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext
                         ) -> tvm.IRModule:
        # IRModule.functions and .attrs are reflected from C++, not declared in Python
        functions = dict(mod.functions.items())  # pyright: ignore[reportAttributeAccessIssue]
        tables = {gvar: function for gvar, function in functions.items()
                  if gvar.name_hint.endswith(TABLES_SUFFIX)}
        folded = relax.transform.FoldConstant()(tvm.IRModule(
            {gvar: function for gvar, function in functions.items() if gvar not in tables},
            attrs=mod.attrs))  # pyright: ignore[reportAttributeAccessIssue]
        for gvar, function in tables.items():
            folded[gvar] = function
        return folded


def without_table_functions(mod: tvm.IRModule) -> tvm.IRModule:
    """`mod` without its table functions and the kernels only they call: what runs once at load
    is not worth tuning."""
    # IRModule.functions and .attrs are reflected from C++, not declared in Python
    functions = mod.functions.items()  # pyright: ignore[reportAttributeAccessIssue]
    kept = tvm.IRModule({gvar: function for gvar, function in functions
                         if not gvar.name_hint.endswith(TABLES_SUFFIX)},
                        attrs=mod.attrs)  # pyright: ignore[reportAttributeAccessIssue]
    return relax.transform.DeadCodeElimination()(kept)
