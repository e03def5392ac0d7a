"""Pad a symbolic loop to a multiple of its tuned inner tile before a trace is replayed on it.

A record tuned at a static size tiles, say, the fbank matmul's 515 rows as 103 x 5: a
micro-kernel of 5 rows inside the reduction loop. Replayed on `frames * 4 + 3` rows, every
row of that micro-kernel carries its own bound check (`(i0 * 103 + i1) * 5 + i2 < rows`),
which keeps LLVM from unrolling and vectorizing it cleanly. Padded to a multiple of 5
(`pad_einsum`: a zero-filled copy in, the compute on padded buffers, a copy of the valid
rows out), the check becomes `i0 * 103 + i1 < rows / 5`, outside the micro-kernel. Measured on
the host: 2331 us replayed, 1622 us padded (copies included), 1477 us at the static size.

The padding is the product of the tuned tiles inside the first reduction loop of the block's
tiling structure (MetaSchedule's CPU structure is SSRSRS: the 3rd and 4th spatial tiles for a
spatial loop, all but the outer tile for a reduction loop, whose zero padding adds nothing).
Only blocks `pad_einsum` accepts (one einsum, e.g. a matmul) are padded.
"""

from __future__ import annotations

import math
from typing import Any

import tvm
from tvm.s_tir.schedule import Schedule, Trace
from tvm.sym.analyzer import Analyzer

from tinyasr.compile.passes.traces import REDUCE, trace_origins

TILING_STRUCTURE = "meta_schedule.tiling_structure"


def _inner_tile(structure: str, tiles: list[int], reduction: bool) -> int:
    """Product of the tiles that run inside the first reduction tile of `structure`."""
    if reduction:
        return math.prod(tiles[1:])
    outer_spatial = structure.index("R") if "R" in structure else len(tiles)
    return math.prod(tiles[outer_spatial:])


def _paddings(mod: tvm.IRModule, instructions: list, decisions: list
              ) -> tuple[str, list[int]] | None:
    """The block to pad and its `pad_einsum` padding (one factor per block iterator), or None
    when no symbolic loop of a tiled block needs one."""
    decision_of = {int(index): [int(f) for f in decision] for index, decision in decisions
                   if hasattr(decision, "__len__")}     # tile decisions; categorical ones are ints
    block_of, loop_of = trace_origins(instructions)
    structure_of = {block_of[inputs[0]]: str(inputs[1]).strip('"')
                    for kind, inputs, attrs, _ in instructions
                    if kind == "Annotate" and attrs[0] == TILING_STRUCTURE
                    and inputs[0] in block_of}
    probe = Schedule(mod)
    analyzer = Analyzer()
    paddings: dict[str, list[int]] = {}
    for index, (kind, inputs, _, _) in enumerate(instructions):
        if kind != "SamplePerfectTile" or inputs[0] not in loop_of or index not in decision_of:
            continue
        name, position = loop_of[inputs[0]]
        if name not in structure_of:
            continue
        block_rv = probe.get_sblock(name)
        block, loops = probe.get(block_rv), probe.get_loops(block_rv)
        if len(loops) != len(block.iter_vars):
            return None
        extent = probe.get(loops[position]).extent
        tile = _inner_tile(structure_of[name], decision_of[index],
                           int(block.iter_vars[position].iter_type) == REDUCE)
        if isinstance(extent, tvm.tirx.IntImm) or tile <= 1 or analyzer.can_prove(
                tvm.tirx.floormod(extent, tile) == 0):
            continue
        paddings.setdefault(name, [1] * len(block.iter_vars))[position] = tile
    if len(paddings) != 1:
        return None
    return next(iter(paddings.items()))


def _root_children(schedule: Schedule) -> list[str]:
    root = schedule.get_sblock("root")
    return [schedule.get(block).name_hint for block in schedule.get_child_blocks(root)]


def _name_child_blocks(mod: tvm.IRModule, instructions: list, decisions: list,
                       copies: set[str]) -> tuple[list, list] | None:
    """The trace with each GetChildBlocks of the root replaced by GetSBlock of the same blocks
    by name, the padding copies left out (the trace expects the unpadded children)."""
    rewritten: list = []
    new_decisions = {int(index): decision for index, decision in decisions}
    moved: dict[int, Any] = {}
    for index, instruction in enumerate(instructions):
        kind, inputs, attrs, outputs = instruction
        if index in new_decisions:
            moved[len(rewritten)] = new_decisions[index]
        if kind != "GetChildBlocks":
            rewritten.append(instruction)
            continue
        probe = Schedule(mod)
        Trace.apply_json_to_schedule([rewritten, [[i, d] for i, d in moved.items()]], probe)
        names = [name for name in _root_children(probe) if name not in copies]
        if len(names) != len(outputs):
            return None
        rewritten.extend(["GetSBlock", [], [name, "main"], [output]]
                         for name, output in zip(names, outputs, strict=True))
    return rewritten, [[index, decision] for index, decision in moved.items()]


def pad_symbolic_tiles(mod: tvm.IRModule, instructions: list, decisions: list
                       ) -> tuple[tvm.IRModule, list, list] | None:
    """(padded module, trace instructions, decisions) to replay instead, or None to replay on
    `mod` as it is. `instructions` already carry literal tiles for symbolic splits."""
    padding = _paddings(mod, instructions, decisions)
    if padding is None:
        return None
    block, factors = padding
    schedule = Schedule(mod)
    before = set(_root_children(schedule))
    try:
        schedule.pad_einsum(schedule.get_sblock(block), factors)
    except Exception:   # noqa: BLE001 - not an einsum pad_einsum can pad
        return None
    copies = set(_root_children(schedule)) - before
    renamed = _name_child_blocks(schedule.mod, instructions, decisions, copies)
    if renamed is None:
        return None
    return schedule.mod, *renamed
