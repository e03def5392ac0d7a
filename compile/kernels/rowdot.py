"""fp32 matmul on a weight read in its stored (N, K) layout: out[i, n] = sum_k x[i, k] * w[n, k].

For a weight that cannot be repacked because something else reads it as it is: Whisper's tied
token embedding (51864 x 384, 80 MB in fp32), gathered row by row for the input embedding and
multiplied for the output logits. The register-tiled kernels (fp32_kernels.py) want their own
packed copy, which would store the largest tensor of the model twice. Here each output is the
dot product of two contiguous rows, L lanes of partial sums at a time, then summed across the
lanes; with a few rows per call (the decoder's hypotheses) the kernel streams the weight once,
and that memory traffic is what a decoder step's logits cost whatever the kernel.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from tinyasr.compile.kernels.fp32 import VectorUnit, halve_lanes

TASK_COLUMNS = 64   # weight rows per parallel task (each task declares its own partial sums)


def rowdot_supported(unit: VectorUnit, k: int) -> bool:
    return k % unit.lanes == 0


def rowdot_kernel(unit: VectorUnit, n: int, k: int) -> tirx.PrimFunc:
    """(x (rows, k) f32, w (n, k) f32) -> (rows, n) f32, rows symbolic; k a multiple of the
    unit's lanes."""
    lanes = unit.lanes
    chunks = k // lanes

    @T.prim_func(private=True, s_tir=True)
    def rowdot(x_handle: T.handle, w: T.Buffer((n, k), "float32"),  # pyright: ignore[reportInvalidTypeForm]
               out_handle: T.handle):  # TVMScript: a buffer's type is a call
        T.func_attr({"tirx.noalias": True})
        rows = T.int64()
        x = T.match_buffer(x_handle, (rows, k), "float32")
        out = T.match_buffer(out_handle, (rows, n), "float32")
        with T.sblock("root"):
            for outer in T.parallel(-(-n // TASK_COLUMNS)):
                # declared in the parallel body: one per task. Allocated at the root it was one
                # buffer that all the pool's threads summed into at once: wrong logits wherever
                # the partial sums stay in memory, as with RVV's vp.load/vp.store
                partial = T.decl_buffer((lanes,), "float32", scope="local")
                for column in range(T.min(TASK_COLUMNS, n - outer * TASK_COLUMNS)):
                    for i in range(rows):
                        for lane in T.vectorized(lanes):
                            partial[lane] = T.float32(0)
                        for c in range(chunks):
                            for lane in T.vectorized(lanes):
                                partial[lane] = partial[lane] + x[
                                    i, c * lanes + lane] * w[
                                    outer * TASK_COLUMNS + column, c * lanes + lane]
                        out[i, outer * TASK_COLUMNS + column] = T.float32(0)
                        for lane in range(lanes):
                            out[i, outer * TASK_COLUMNS + column] = (
                                out[i, outer * TASK_COLUMNS + column] + partial[lane])

    return rowdot


INT8_COLUMNS = 4   # weight rows whose dot products run interleaved in the int8 kernel


def rowdot_int8_supported(unit: VectorUnit, k: int, group: int) -> bool:
    """Whole vectors along K and in each group of columns sharing a scale, of 4 to 32 lanes
    (fp32.halve_lanes)."""
    return (4 <= unit.lanes <= 32 and k % group == 0 and group % unit.lanes == 0)


def rowdot_int8_kernel(unit: VectorUnit, n: int, k: int, group: int) -> tirx.PrimFunc:
    """(x (rows, k) f32, w (n, k) int8, scale (n, k / group) f32) -> (rows, n) f32,
    out[i, c] = sum_g scale[c, g] * sum_{j in group g} x[i, j] * w[c, j], rows symbolic;
    groups of whole vectors (rowdot_int8_supported).

    The int8 tied embedding's logits (compile/whisper_int8.py: one scale per `group` columns
    of a token row): a quarter of the fp32 matrix's bytes to stream each decoder step, the
    activations staying fp32 (each weight vector widened to fp32 in registers). INT8_COLUMNS
    weight rows at a time, each with its own accumulator so that their multiply-adds overlap
    (one accumulator chains all k / L of them); at the end of each group the accumulator,
    times that group's scale broadcast, is added to the row's total (one vector multiply-add
    per group, not a scale per weight), and the totals are summed across their lanes by
    halving. Parallel tasks of TASK_COLUMNS rows, each with its own partial sums (see
    rowdot_kernel); a task's last group of rows is moved back to end at the task's last row
    (rows computed twice, with the same values), a task of fewer rows than a group takes them
    one at a time."""
    lanes = unit.lanes
    groups, chunks = k // group, group // lanes
    columns_at_once = INT8_COLUMNS
    tasks = -(-n // TASK_COLUMNS)
    vector = f"float32x{lanes}"

    def acc(c):
        """Accumulator c's lanes (a ramp's lanes must be constants: built here, in Python)."""
        return T.ramp(c * lanes, 1, lanes)

    def total(c):
        """The total of column c, after the INT8_COLUMNS accumulators."""
        return T.ramp((columns_at_once + c) * lanes, 1, lanes)

    @T.macro
    def columns(x, w, scale, out, partial, i, first, count):
        """out[i, first : first + count] from `count` accumulators and totals of L lanes."""
        for c in T.unroll(count):
            partial[total(c)] = T.broadcast(T.float32(0), lanes)
        for g in T.unroll(groups):
            for c in T.unroll(count):
                partial[acc(c)] = T.broadcast(T.float32(0), lanes)
            for chunk in T.unroll(chunks):
                for c in T.unroll(count):
                    partial[acc(c)] = partial[acc(c)] + x.vload(
                        [i, g * group + chunk * lanes], vector) * T.Cast(
                        vector, w.vload([first + c, g * group + chunk * lanes], f"int8x{lanes}"))
            for c in T.unroll(count):
                partial[total(c)] = partial[total(c)] + partial[acc(c)] * T.broadcast(
                    scale[first + c, g], lanes)
        for c in T.unroll(count):
            halve_lanes(partial, (columns_at_once + c) * lanes, lanes)
            out[i, first + c] = (partial[(columns_at_once + c) * lanes]
                                 + partial[(columns_at_once + c) * lanes + 1])

    @T.prim_func(private=True)
    def rowdot_int8(x_handle: T.handle, w: T.Buffer((n, k), "int8"),  # pyright: ignore[reportInvalidTypeForm]
                    scale: T.Buffer((n, groups), "float32"),  # pyright: ignore[reportInvalidTypeForm]
                    out_handle: T.handle):  # TVMScript: a buffer's type is a call
        T.func_attr({"tirx.noalias": True})
        rows = T.int64()
        x = T.match_buffer(x_handle, (rows, k), "float32")
        out = T.match_buffer(out_handle, (rows, n), "float32")
        for outer in T.parallel(tasks):
            # declared in the parallel body: one per task (see rowdot_kernel)
            partial = T.decl_buffer((2 * columns_at_once * lanes,), "float32", scope="local")
            count = T.min(TASK_COLUMNS, n - outer * TASK_COLUMNS)
            if count >= columns_at_once:
                for block in range((count + columns_at_once - 1) // columns_at_once):
                    for i in range(rows):
                        columns(x, w, scale, out, partial, i,
                                outer * TASK_COLUMNS
                                + T.min(block * columns_at_once, count - columns_at_once),
                                columns_at_once)
            else:
                for column in range(count):
                    for i in range(rows):
                        columns(x, w, scale, out, partial, i, outer * TASK_COLUMNS + column, 1)

    return rowdot_int8
