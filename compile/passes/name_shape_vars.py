"""Give the imported functions' symbolic sizes the names of what they count.

torch.export names every dynamic size after a sympy symbol (`s76`), so an IR dump reads
`s76 * 4 + 3` and nothing downstream can tell the encoder's frame count from the n-best's tree
nodes. This pass renames each to its role from `tinyasr.compile.graphs.SHAPE_VARIABLES`
(`frames`, `nodes`): the dumps read `frames * 4 + 3`, and the TIR functions legalized from
them carry the same names, which is how the tuner picks a realistic size for each
(`tinyasr.compile.schedule_database.TUNING_EXTENTS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import tvm
from tvm import relax, tirx

LOWER_BOUND_ATTR = "tir_var_lower_bound"
UPPER_BOUND_ATTR = "tir_var_upper_bound"


def name_shape_vars(function: relax.Function, roles: Mapping[tuple[str, int], str]
                    ) -> relax.Function:
    """`function` with the symbolic variable in each (input name, axis) of `roles` renamed to
    its role; the lower bounds the importer recorded follow the rename. The upper bounds it
    recorded (a torch.export Dim's max, such as Whisper's 64 hypotheses of 448 tokens) are
    dropped: the memory planner would size every tensor at them (Whisper's logits at 5.9 GB);
    the bounds it plans with are the compiler's own (passes/bound_shape_vars.py)."""
    params = {param.name: param for param in function.params}
    renames: dict[tirx.Var, tirx.Var] = {}
    for (param_name, axis), role in roles.items():
        (old,) = tvm.tirx.analysis.undefined_vars(params[param_name].ty.shape.values[axis])
        renames.setdefault(old, tirx.Var(role, old.ty.dtype))
    renamed = function.bind_symbolic_vars(renames)
    if UPPER_BOUND_ATTR in renamed.attrs:
        # TVM declares without_attr to return a BaseFunc, not the function's own class
        renamed = cast(relax.Function, renamed.without_attr(UPPER_BOUND_ATTR))
    bounds = function.attrs.get(LOWER_BOUND_ATTR)
    if bounds is None:
        return renamed
    new_names = {old.name: new.name for old, new in renames.items()}
    renamed_bounds = {new_names.get(name, name): bound for name, bound in bounds.items()}
    # TVM declares with_attr to return a BaseFunc, not the function's own class
    return renamed.with_attr(LOWER_BOUND_ATTR, renamed_bounds)  # pyright: ignore[reportReturnType]
