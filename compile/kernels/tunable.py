"""Tunable kernel templates: the parameters a hand-written kernel is built with, the space
they range over, and which ones a compile uses.

A hand-written kernel is a template: its shape (the layer's N and K, the target's vector unit
or dot ISA) fixes what it computes, its parameters (the register tile's rows and column
blocks) how fast. Each template lists its space: every choice valid for the shape that fits
the target's vector registers, the default (the heuristic an untuned compile uses) first.
`tinyasr tune` times the points of each kernel's space on the device
(tinyasr.schedules.kernel_search) and records them in the device's tuning database; compile
builds each kernel with the fastest recorded parameters, else the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tvm import tirx

Params = dict[str, int]


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


class KernelChoices:
    """The parameters a compile builds each tunable kernel with (by kernel name; the default
    for a kernel with no choice, or a choice no longer in its space), and every tunable kernel
    it made: what the tuner searches."""

    def __init__(self, chosen: Mapping[str, Params] | None = None):
        self.chosen = dict(chosen or {})
        self.made: dict[str, Tunable] = {}
        self.applied: dict[str, Params] = {}   # kernels built with other than their default

    def make(self, tunable: Tunable) -> tirx.PrimFunc:
        self.made[tunable.name] = tunable
        params = self.chosen.get(tunable.name)
        if params is None or params not in tunable.space:
            params = tunable.default
        if params != tunable.default:
            self.applied[tunable.name] = params
        return tunable.make(params)
