"""The decoder's FSMN over a prefix tree, reading each node's window through its index.

    rows (N, d) f32, index (U, K) int64, weight (K, 1, d) f32 (WIO, one channel per group):
        tree_fsmn      out (U, 1, d):  out[u, 0, c] = sum_k rows[index[u, k], c] * weight[k, 0, c]
        gather_abs_max out ():         max |rows[index[u, k], c]| over every u, k, c

what take(rows, index, axis=0) followed by a depthwise conv1d (or by abs and a max over every
axis) computes, without the (U, K, d) windows in between (2.9 MB for a 20 s utterance's 457
tree nodes, per decoder block). An index outside [0, N) is clipped into it, as take's
mode="clip" does. Sums run over k in order, as the legalized conv1d's do.

The channels are cut into vectors of the target's lanes (the last one moved back to end at the
last channel when the lanes do not divide d; its lanes shared with the one before hold the same
values), one accumulator register per vector, in groups that fit the registers: a node's index
row is read once per group, and each gathered row is read as whole vectors. A loop vectorized
over all d channels at once (144 in the shipped model) made LLVM split its accumulator into
scalars and shuffle them into and out of vectors on every step. For the 180 nodes of a 5 s
utterance's 10-best (AMD EPYC Zen 5, AVX-512): tree_fsmn 56 -> 5.6 us a call, gather_abs_max
61 -> 3.3 us.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import NARROW, VectorUnit
from tinyasr.compile.kernels.im2col import OPAQUE

SPARE_REGISTERS = 3   # beside the accumulators: a gathered vector, a weight vector, a product


@dataclass(frozen=True)
class ChannelVectors:
    """How `dim` channels are cut: vectors of `lanes` (narrow vectors, or scalars, for fewer
    channels than the unit's lanes), in `groups` of `per_group` accumulators each, as few groups
    as fit the vector registers, the vectors spread evenly over them."""

    dim: int
    lanes: int
    groups: int
    per_group: int

    @classmethod
    def of(cls, unit: VectorUnit, dim: int) -> ChannelVectors:
        lanes = unit.lanes if dim >= unit.lanes else NARROW if dim >= NARROW else 1
        vectors = -(-dim // lanes)
        groups = -(-vectors // max(1, unit.registers - SPARE_REGISTERS))
        return cls(dim, lanes, groups, -(-vectors // groups))

    @property
    def dtype(self) -> str:
        return "float32" if self.lanes == 1 else f"float32x{self.lanes}"

    @property
    def zero(self) -> tirx.Expr:
        return T.float32(0) if self.lanes == 1 else T.broadcast(T.float32(0), self.lanes)

    def start(self, group, vector) -> tirx.Expr:   # TIR indices; TVM types their * loosely
        """The first channel of a group's vector: the last vector moved back to end at `dim`."""
        return T.min((group * self.per_group + vector) * self.lanes, self.dim - self.lanes)


def tree_fsmn_kernel(unit: VectorUnit, dim: int, taps: int) -> tirx.PrimFunc:
    """(rows, index, weight) -> (U, 1, dim) f32; N and U symbolic."""
    channels = ChannelVectors.of(unit, dim)
    lanes, groups, per_group = channels.lanes, channels.groups, channels.per_group
    vector, zero = channels.dtype, channels.zero

    @T.prim_func(private=True)
    def tree_fsmn(rows_handle: T.handle, index_handle: T.handle, weight_handle: T.handle,
                  out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        n, nodes = T.int64(), T.int64()
        rows = T.match_buffer(rows_handle, (n, dim), "float32")
        index = T.match_buffer(index_handle, (nodes, taps), "int64")
        weight = T.match_buffer(weight_handle, (taps, 1, dim), "float32")
        out = T.match_buffer(out_handle, (nodes, 1, dim), "float32")
        acc = T.alloc_buffer((per_group * lanes,), "float32", scope="local")
        for u, group in T.grid(nodes, groups):
            for v in T.unroll(per_group):
                acc.vstore([v * lanes], zero)
            for k in range(taps):
                row = T.max(T.min(index[u, k], n - 1), T.int64(0))
                for v in T.unroll(per_group):
                    start = channels.start(group, v)
                    acc.vstore([v * lanes], acc.vload([v * lanes], vector)
                               + rows.vload([row, start], vector)
                               * weight.vload([k, 0, start], vector))
            for v in T.unroll(per_group):
                out.vstore([u, 0, channels.start(group, v)], acc.vload([v * lanes], vector))

    return tree_fsmn


def gather_abs_max_kernel(unit: VectorUnit, dim: int, taps: int) -> tirx.PrimFunc:
    """(rows, index) -> () f32; N and U symbolic. Absolute values are >= 0, so the maxima
    start at 0 (what max over a non-empty set of them gives)."""
    channels = ChannelVectors.of(unit, dim)
    lanes, groups, per_group = channels.lanes, channels.groups, channels.per_group
    vector, zero = channels.dtype, channels.zero

    @T.prim_func(private=True)
    def gather_abs_max(rows_handle: T.handle, index_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": OPAQUE})
        n, nodes = T.int64(), T.int64()
        rows = T.match_buffer(rows_handle, (n, dim), "float32")
        index = T.match_buffer(index_handle, (nodes, taps), "int64")
        out = T.match_buffer(out_handle, (), "float32")
        peak = T.alloc_buffer((per_group * lanes,), "float32", scope="local")
        lane_peak = T.alloc_buffer((lanes,), "float32", scope="local")
        lane_peak.vstore([0], zero)
        for group in range(groups):
            for v in T.unroll(per_group):
                peak.vstore([v * lanes], zero)
            for u, k in T.grid(nodes, taps):
                row = T.max(T.min(index[u, k], n - 1), T.int64(0))
                for v in T.unroll(per_group):
                    start = channels.start(group, v)
                    peak.vstore([v * lanes], T.max(peak.vload([v * lanes], vector),
                                                   T.fabs(rows.vload([row, start], vector))))
            for v in T.unroll(per_group):
                lane_peak.vstore([0], T.max(lane_peak.vload([0], vector),
                                            peak.vload([v * lanes], vector)))
        out[()] = T.float32(0)
        for c in range(lanes):
            out[()] = T.max(out[()], lane_peak[c])

    return gather_abs_max
