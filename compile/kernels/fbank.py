"""The fbank's power spectrum in one kernel: both stages of the factored 512-point DFT and the
squared magnitudes per tile of frames, the stage between them kept in the first-level cache.

    power[t, g*16 + c] = re^2 + im^2,  (re, im) of bin column c of output group g

as model/network/frontend.py's `Fbank.power_spectrum` computes it: frames (T, 400) windowed, viewed
as 25 rows of 16 (sample 16 * n1 + n2); the inner DFT (25, 32) over n1 for each n2, then per group
g the outer DFT (32, 32) over its two inner columns (2g, 2g + 1) at every n2, real parts of its
16 bins first, then imaginary parts. As matmuls, the graph needs a transpose before each stage
and one after (frames to columns, inner outputs to groups, groups to frames); here the stages
read their operands where they lie: an input is a broadcast scalar, so its address costs
nothing, and the weights' rows are the vectors.

Per tile of rows frames: for each n2, a rows x 32 register tile over n1 (the inner DFT's
columns as vectors) stored to the tile's stage; then for each group a rows x 32 tile over its
32 inputs, squared and summed at the store.

`waveform_power_spectrum_kernel` also does the steps before the DFT (`Fbank.windowed` of
`frames_of`): it reads frame t as samples 160 t to 160 t + 400 of the waveform and makes each
tile's frames in a buffer of the tile (mean removed, pre-emphasis, Povey window), so the
(T, 400) frames and their centred and windowed copies (3.2 MB each for 20 s) are never stored.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import MAX_ROWS, VectorUnit, multiply_add
from tinyasr.model.network.framing import FRAME_LENGTH, FRAME_SHIFT
from tinyasr.model.network.frontend import BINS_PER_GROUP, GROUPS, PREEMPHASIS, ROWS, STRIDE

INNER_COLUMNS = 2 * GROUPS           # the inner DFT's (real, imaginary) column pairs
OUTER_INPUTS = 2 * STRIDE            # a group's inputs: its two inner columns at every n2
OUTER_COLUMNS = 2 * BINS_PER_GROUP   # a group's bins, real parts then imaginary parts
POWER_COLUMNS = GROUPS * BINS_PER_GROUP


def power_spectrum_supported(unit: VectorUnit) -> bool:
    """Whether a group's real (and imaginary) parts are whole vectors of the unit."""
    return BINS_PER_GROUP % unit.lanes == 0


def _tile_rows(unit: VectorUnit) -> int:
    vectors = INNER_COLUMNS // unit.lanes
    return max(1, min(MAX_ROWS, (unit.registers - vectors - 1) // vectors))


def _frame_tile(unit: VectorUnit):
    """The macro computing one tile of frames' power (both DFT stages)."""
    lanes = unit.lanes
    vectors = INNER_COLUMNS // lanes                 # = OUTER_COLUMNS // lanes
    half = vectors // 2

    @T.macro
    def zero(acc, count):
        for i in T.unroll(count * vectors):
            acc[T.ramp(i * lanes, 1, lanes)] = T.broadcast(T.float32(0), lanes)

    @T.macro
    def frame_tile(frames, inner, outer, power, acc, stage, first, source, count):
        """power[first : first + count] from frames[source : source + count]."""
        for n2 in range(STRIDE):
            zero(acc, count)
            for n1 in range(ROWS):
                for r in T.unroll(count):
                    for v in T.unroll(vectors):
                        multiply_add(acc, (r * vectors + v) * lanes, lanes,
                                     frames[source + r, n1 * STRIDE + n2],
                                     inner.vload([n1, v * lanes], f"float32x{lanes}"))
            for r in T.unroll(count):
                for v in T.unroll(vectors):
                    stage.vstore([r, n2, v * lanes],
                                 acc[T.ramp((r * vectors + v) * lanes, 1, lanes)])
        for g in range(GROUPS):
            zero(acc, count)
            for part in T.unroll(2):
                for n2 in range(STRIDE):
                    for r in T.unroll(count):
                        for v in T.unroll(vectors):
                            multiply_add(acc, (r * vectors + v) * lanes, lanes,
                                         stage[r, n2, 2 * g + part],
                                         outer.vload([g, part * STRIDE + n2, v * lanes],
                                                     f"float32x{lanes}"))
            for r in T.unroll(count):
                for v in T.unroll(half):
                    power.vstore(
                        [first + r, g * BINS_PER_GROUP + v * lanes],
                        acc[T.ramp((r * vectors + v) * lanes, 1, lanes)]
                        * acc[T.ramp((r * vectors + v) * lanes, 1, lanes)]
                        + acc[T.ramp((r * vectors + half + v) * lanes, 1, lanes)]
                        * acc[T.ramp((r * vectors + half + v) * lanes, 1, lanes)])

    return frame_tile


def power_spectrum_kernel(unit: VectorUnit) -> tirx.PrimFunc:
    """(frames (rows, 400), inner DFT (25, 32), outer DFTs (16, 32, 32)) -> (rows, 256) float32
    power, bins in group order (see power_spectrum_supported)."""
    frame_tile, tile_rows = _frame_tile(unit), _tile_rows(unit)
    accumulators = tile_rows * INNER_COLUMNS

    @T.prim_func(private=True)
    def kernel(frames_handle: T.handle, inner_handle: T.handle, outer_handle: T.handle,
               power_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        rows = T.int64()
        frames = T.match_buffer(frames_handle, (rows, FRAME_LENGTH), "float32")
        inner = T.match_buffer(inner_handle, (ROWS, INNER_COLUMNS), "float32")
        outer = T.match_buffer(outer_handle, (GROUPS, OUTER_INPUTS, OUTER_COLUMNS), "float32")
        power = T.match_buffer(power_handle, (rows, POWER_COLUMNS), "float32")
        acc = T.alloc_buffer((accumulators,), "float32", scope="local")
        stage = T.alloc_buffer((tile_rows, STRIDE, INNER_COLUMNS), "float32", scope="local")
        for full in range(rows // tile_rows):
            frame_tile(frames, inner, outer, power, acc, stage, full * tile_rows,
                       full * tile_rows, tile_rows)
        for row in range(rows // tile_rows * tile_rows, rows):
            frame_tile(frames, inner, outer, power, acc, stage, row, row, 1)

    return kernel


def waveform_power_spectrum_kernel(unit: VectorUnit) -> tirx.PrimFunc:
    """(waveform (1, samples), window (400,), inner DFT, outer DFTs) -> (rows, 256) float32
    power of frames 0 .. rows - 1, frame t being samples 160 t .. 160 t + 399 with its mean
    removed, pre-emphasized (x[i] - 0.97 x[i - 1], x[-1] = x[0]) and windowed, as
    `Fbank.windowed(frames_of(waveform))`. The caller guarantees 160 (rows - 1) + 400 <=
    samples (compile/passes/fused_power_spectrum.py matches the graph that cuts them)."""
    frame_tile, tile_rows = _frame_tile(unit), _tile_rows(unit)
    accumulators = tile_rows * INNER_COLUMNS

    @T.macro
    def windowed_tile(waveform, window, frames, total, first, count):
        """frames[0 : count] = the windowed frames first .. first + count - 1."""
        for r in range(count):
            start = (first + r) * FRAME_SHIFT
            total[0] = T.float32(0)
            for i in range(FRAME_LENGTH):
                total[0] = total[0] + waveform[0, start + i]
            mean = total[0] / T.float32(FRAME_LENGTH)
            frames[r, 0] = ((waveform[0, start] - mean)
                            - T.float32(PREEMPHASIS) * (waveform[0, start] - mean)) * window[0]
            for i in range(1, FRAME_LENGTH):
                frames[r, i] = ((waveform[0, start + i] - mean)
                                - T.float32(PREEMPHASIS) * (waveform[0, start + i - 1] - mean)
                                ) * window[i]

    @T.prim_func(private=True)
    def kernel(waveform_handle: T.handle, window_handle: T.handle, inner_handle: T.handle,
               outer_handle: T.handle, power_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        samples, rows = T.int64(), T.int64()
        waveform = T.match_buffer(waveform_handle, (1, samples), "float32")
        window = T.match_buffer(window_handle, (FRAME_LENGTH,), "float32")
        inner = T.match_buffer(inner_handle, (ROWS, INNER_COLUMNS), "float32")
        outer = T.match_buffer(outer_handle, (GROUPS, OUTER_INPUTS, OUTER_COLUMNS), "float32")
        power = T.match_buffer(power_handle, (rows, POWER_COLUMNS), "float32")
        acc = T.alloc_buffer((accumulators,), "float32", scope="local")
        stage = T.alloc_buffer((tile_rows, STRIDE, INNER_COLUMNS), "float32", scope="local")
        frames = T.alloc_buffer((tile_rows, FRAME_LENGTH), "float32", scope="local")
        total = T.alloc_buffer((1,), "float32", scope="local")
        for full in range(rows // tile_rows):
            windowed_tile(waveform, window, frames, total, full * tile_rows, tile_rows)
            frame_tile(frames, inner, outer, power, acc, stage, full * tile_rows, 0, tile_rows)
        for row in range(rows // tile_rows * tile_rows, rows):
            windowed_tile(waveform, window, frames, total, row, 1)
            frame_tile(frames, inner, outer, power, acc, stage, row, 0, 1)

    return kernel
