"""What a MetaSchedule trace's JSON instructions refer to, for the passes that rewrite traces
before replaying them (apply_tuned_schedules.py, tile_padding.py)."""

from __future__ import annotations

REDUCE = 2          # IterVar type of a reduction axis (tirx IterVar.CommReduce)


def trace_origins(instructions: list) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """The block each block variable names (GetSBlock), and the (block, position) of each loop
    variable fetched from a named block (GetLoops): where a trace's tiles act on the function."""
    block_of: dict[str, str] = {}
    loop_of: dict[str, tuple[str, int]] = {}
    for kind, inputs, attrs, outputs in instructions:
        if kind == "GetSBlock":
            block_of[outputs[0]] = attrs[0]
        elif kind == "GetLoops" and inputs[0] in block_of:
            loop_of.update({loop: (block_of[inputs[0]], position)
                            for position, loop in enumerate(outputs)})
    return block_of, loop_of
