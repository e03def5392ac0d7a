"""Tunable kernel templates: the parameters a hand-written kernel is built with, the space
they range over, and which ones a compile uses.

A hand-written kernel is a template: its shape (the layer's N and K, the target's vector unit
or dot ISA) fixes what it computes, its parameters (the register tile's rows and column
blocks) how fast. Each template lists its space: every choice valid for the shape that fits
the target's vector registers, the default (the heuristic an untuned compile uses) first.
`tinyasr tune` times the points of each kernel's space on the device
(tinyasr.schedules.kernel_search) and records them in the device's tuning database; compile
builds each kernel with the fastest recorded parameters when they beat the default's time by
MIN_GAIN, else with the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tvm import tirx

Params = dict[str, int]
KernelTimings = Mapping[str, Sequence[tuple[Params, float]]]   # kernel -> (params, us) timed

# A timed choice replaces the default only this much faster than it: the default is a
# register-filling tile, and closer timings are noise on a shared machine (the default tile of
# one int8 kernel timed 54.0 and 50.9 us in two tuning runs on the 2-core AMD EPYC host).
MIN_GAIN = 1.03


@dataclass(frozen=True)
class Tunable:
    """One kernel as a template: its function name (which says every shape parameter, so it
    keys the kernel in a device's database), how to make it from parameters, and its space."""
    name: str
    make: Callable[[Params], tirx.PrimFunc]
    space: tuple[Params, ...]    # the default first

    @property
    def default(self) -> Params:
        return self.space[0]


def register_tiles(blocks: int, max_rows: int, max_blocks: int,
                   fits: Callable[[int, int], bool]) -> list[tuple[int, int]]:
    """Every (rows, column blocks) register tile of a matmul kernel whose column blocks divide
    the weight's `blocks` and that `fits` the vector registers; the most accumulators (rows x
    blocks) first, then the widest."""
    tiles = [(rows, width) for width in range(1, max_blocks + 1) if blocks % width == 0
             for rows in range(1, max_rows + 1) if fits(rows, width)]
    return sorted(tiles, key=lambda tile: (tile[0] * tile[1], tile[1]), reverse=True)


class KernelChoices:
    """The parameters a compile builds each tunable kernel with, from the device's timings
    (`choose`), and every tunable kernel it made: what the tuner searches."""

    def __init__(self, timings: KernelTimings | None = None):
        self.timings = timings or {}
        self.made: dict[str, Tunable] = {}
        self.applied: dict[str, Params] = {}   # kernels built with other than their default

    def choose(self, tunable: Tunable) -> Params:
        """The fastest timed point still in the kernel's space if the default was timed and
        is MIN_GAIN slower, else the default."""
        timed = [(params, us) for params, us in self.timings.get(tunable.name, ())
                 if params in tunable.space]
        default = [us for params, us in timed if params == tunable.default]
        if not timed or not default:
            return tunable.default
        params, us = min(timed, key=lambda point: point[1])
        return params if us * MIN_GAIN <= min(default) else tunable.default

    def make(self, tunable: Tunable) -> tirx.PrimFunc:
        self.made[tunable.name] = tunable
        params = self.choose(tunable)
        if params != tunable.default:
            self.applied[tunable.name] = params
        return tunable.make(params)
