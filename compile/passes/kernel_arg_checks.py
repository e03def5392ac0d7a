"""Kernels without argument checks: the TIR pipeline a deployable is built with.

TVM's MakePackedAPI gives every PrimFunc a check of each argument against its declaration
(type code, rank, dtype, every dimension, strides, byte offset, alignment, device), each with
its own message string. In a deployable only the VM calls the kernels, with the tensors the
compiler planned for them: the checks can never fail, and they were half its code (the shipped
int8 SAN-M for rpi4: model.so 395 -> 199 KB, .text 225 -> 70 KB).

The checks that can fail stay: the bound checks (bound_shape_vars.py, `assert frames <= bound`,
what keeps longer audio from overrunning the planned storage) and the VM's shape functions
(host functions, `tirx.is_host_func`). The VM checks what a caller passes to a function itself
(its builtins check the inputs' ranks, dtypes and shapes before any kernel runs).

`TIR_PIPELINE` names TVM's default TIR pipeline with this pass after it, for `tvm.compile(...,
tir_pipeline=TIR_PIPELINE)`.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.tirx.compilation_pipeline import PIPELINE_MAP, register_tir_pipeline

from tinyasr.compile.passes.bound_shape_vars import CHECK_SUFFIX

TIR_PIPELINE = "tinyasr"
DEFAULT_PIPELINE = "s_tir"   # what tvm.compile's tir_pipeline="default" resolves to in TVM 0.27
HOST_FUNCTION_ATTR = "tirx.is_host_func"


def keeps_checks(name: str, function: tirx.PrimFunc) -> bool:
    """Whether a function's asserts can fail in a deployable: a bound check or a VM shape
    function."""
    return name.endswith(CHECK_SUFFIX) or bool(function.attrs
                                               and function.attrs.get(HOST_FUNCTION_ATTR))


@tvm.transform.module_pass(opt_level=0, name="StripKernelArgChecks")
class StripKernelArgChecks:
    """Removes the asserts of every PrimFunc but the bound checks and shape functions."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        kernels = {gv: f for gv, f in mod.functions.items()
                   if isinstance(f, tirx.PrimFunc) and not keeps_checks(gv.name_hint, f)}
        if not kernels:
            return mod
        stripped = tirx.transform.SkipAssert()(tvm.IRModule(kernels))
        out = mod.clone()
        for gv in kernels:
            out.update_func(gv, stripped[gv.name_hint])
        return out


def _pipeline():
    lowering, finalize_host, finalize_device = PIPELINE_MAP[DEFAULT_PIPELINE]()
    return (tvm.transform.Sequential([lowering, StripKernelArgChecks()]), finalize_host,
            finalize_device)


register_tir_pipeline(TIR_PIPELINE, _pipeline)
