"""Functions without a tuned schedule compute each fused step in one pass, not one pass per step.

FuseTIR joins a chain of elementwise ops into one function, but leaves every op its own loop
nest writing a full-size intermediate buffer: the int8 activation rounding `clip(round(x / s))
* s` reads and writes its whole tensor six times. TVM's default schedule keeps that, so every
function the tuning database has no (or no winning) schedule for is memory-bound several times
over. This pass inlines each intermediate into its one consumer, so the chain runs as a single
loop nest. An intermediate read by two blocks stays (inlining would compute it twice: the
softmax's exponentials feed both its sum and its normalization; measured 2.5x slower inlined).

Measured on the shipped int8 model, each function alone on this host: the rounding chain on the
subsampling output 338 -> 108 us, the front end's frame slicing 98 -> 16 us, the positional
encoding's split-multiply-add 108 -> 21 us; a whole-tensor abs-max 494 -> 361 us.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.s_tir.schedule import Schedule, ScheduleError

from tinyasr.compile.passes.apply_tuned_schedules import SCHEDULED


def inline_intermediates(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """`func` with every block that has exactly one consumer computed inside that consumer."""
    schedule = Schedule(func)
    try:
        schedule.get_sblock("root")
    except ScheduleError:   # plain loops without blocks (scatter_elements' legalization)
        return func
    inlined = True
    while inlined:
        inlined = False
        for block in schedule.get_child_blocks(schedule.get_sblock("root")):
            if len(schedule.get_consumers(block)) != 1:
                continue
            try:
                schedule.compute_inline(block)
            except ScheduleError:   # a reduction, or an index map inlining cannot express
                continue
            inlined = True
            break
    return schedule.mod["main"]


def has_default_schedule(func: tirx.PrimFunc) -> bool:
    """A function legalized from a Relax op (S-TIR blocks) that no schedule has touched yet; the
    hand-written int8 and BSR kernels are plain TIR, scheduled by hand."""
    attrs = func.attrs or {}
    return bool(attrs.get("s_tir", False)) and not bool(attrs.get(SCHEDULED, False))


@tvm.transform.module_pass(opt_level=0, name="InlineIntermediates")
class InlineIntermediates:
    """inline_intermediates on every TIR function that still has TVM's default schedule."""

    def transform_module(self, mod: tvm.IRModule, _context: tvm.transform.PassContext
                         ) -> tvm.IRModule:
        updates = {gvar: inline_intermediates(func) for gvar, func in mod.functions.items()
                   if isinstance(func, tirx.PrimFunc) and has_default_schedule(func)}
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod
