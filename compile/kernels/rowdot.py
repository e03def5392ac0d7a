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

from tinyasr.compile.kernels.fp32 import VectorUnit, halve_lanes, lane_sums_of_4
from tinyasr.compile.kernels.int8 import VNNI, DotIsa
from tinyasr.compile.kernels.quantize import INT8_MAX as LEVELS
from tinyasr.compile.kernels.quantize import TINY

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


VNNI_BYTES = 64   # int8 products of one vpdpbusd: 16 int32 lanes x 4
VNNI_COLUMNS = 4  # weight rows per block of the VNNI kernel: one 4-lane store of sums


def rowdot_vnni_supported(isa: DotIsa, k: int, group: int) -> bool:
    """AVX-512 VNNI, and groups of whole 64-byte vectors."""
    return isa is VNNI and group % VNNI_BYTES == 0 and k % group == 0


def rowdot_vnni_kernel(n: int, k: int, group: int) -> tirx.PrimFunc:
    """rowdot_int8_kernel's function on vpdpbusd, each activation row rounded to int8 per
    group of the weight's scales (g: the columns of group g):

        sx[i, g] = max(max |x[i, g]|, 1e-12) / 127,  xq[i, g] = round(x[i, g] * (1 / sx[i, g]))
        out[i, c] = sum_g sx[i, g] scale[c, g] sum_{j in g} xq[i, j] w[c, j]

    One scale per row, as the linear layers round theirs, changed the punctuation or case of 4
    of the 16 real-speech transcripts in PyTorch, one per group of 128 changed 1 (WER the same).
    The weight rows as stored are the unsigned operand: each 64-byte vector gets its sign bits
    flipped (w + 128), so a group's products come out 128 * sum_g xq[i] too large. That term
    depends on the row and group only: computed once per row, it starts lane 0 of each group's
    accumulator negated; sx[i, g] scale[c, g] then multiplies the group's sum. One xor and one
    vpdpbusd per 64 products, where the widening kernel does a convert and an fp32
    multiply-add per 16. Parallel tasks of TASK_COLUMNS weight rows, each task's rows read from
    memory once: every activation row runs over them in turn (the task's 24 KB stay in the
    first-level cache for the next), VNNI_COLUMNS weight rows at a time (a task's last block
    moved back to end at its last row), whose fp32 totals are summed across lanes together
    (fp32.lane_sums_of_4). A task of fewer rows than a block takes them one at a time."""
    lanes = VNNI.lanes
    groups, chunks = k // group, group // VNNI_BYTES
    tasks = -(-n // TASK_COLUMNS)
    f32, i32, i8 = f"float32x{lanes}", f"int32x{lanes}", f"int8x{VNNI_BYTES}"

    def dot(acc, unsigned, signed):
        """vpdpbusd on two whole vectors (int8.py's broadcasts one group of activations)."""
        return T.call_llvm_pure_intrin(i32, "llvm.x86.avx512.vpdpbusd.512", acc, unsigned,
                                       signed)

    def acc(c):
        return T.ramp(c * lanes, 1, lanes)

    @T.macro
    def round_row(x, xq, x_scale, terms, top, i):
        """xq[i], x_scale[i, g] and terms[i, g] = (-128 * sum_g xq[i], 0, ..., 0)."""
        for g in range(groups):
            top[0] = T.float32(0)
            for j in range(group):
                top[0] = T.max(top[0], T.fabs(x[i, g * group + j]))
            x_scale[i, g] = T.max(top[0], T.float32(TINY)) / T.float32(LEVELS)
            # times the reciprocal: what fast-math (arcp) made of a division in some loops
            # but not others, written out so that every row rounds alike
            top[0] = T.float32(1) / x_scale[i, g]
            for j in range(group):
                xq[i, g * group + j] = T.Cast("int8", T.max(T.min(
                    T.round(x[i, g * group + j] * top[0]), T.float32(LEVELS)),
                    T.float32(-LEVELS)))
            for lane in range(lanes):
                terms[i, g, lane] = 0
            for j in range(group):
                terms[i, g, 0] = terms[i, g, 0] - 128 * T.Cast("int32", xq[i, g * group + j])

    @T.macro
    def totals(xq, x_scale, terms, w, scale, sums, partial, i, first, count):
        """partial[c * 16 ...] = the scaled group sums of columns first ... first + count - 1,
        16 lanes each."""
        for c in T.unroll(count):
            partial[acc(c)] = T.broadcast(T.float32(0), lanes)
        for g in T.unroll(groups):
            for c in T.unroll(count):
                sums[acc(c)] = terms.vload([i, g, 0], i32)
            for chunk in T.unroll(chunks):
                for c in T.unroll(count):
                    sums[acc(c)] = dot(
                        sums[acc(c)],
                        T.bitwise_xor(w.vload([first + c, g * group + chunk * VNNI_BYTES], i8),
                                      T.broadcast(T.int8(-128), VNNI_BYTES)),
                        xq.vload([i, g * group + chunk * VNNI_BYTES], i8))
            for c in T.unroll(count):
                partial[acc(c)] = partial[acc(c)] + T.Cast(f32, sums[acc(c)]) * T.broadcast(
                    scale[first + c, g] * x_scale[i, g], lanes)

    @T.prim_func(private=True)
    def rowdot_vnni(x_handle: T.handle, w: T.Buffer((n, k), "int8"),  # pyright: ignore[reportInvalidTypeForm]
                    scale: T.Buffer((n, groups), "float32"),  # pyright: ignore[reportInvalidTypeForm]
                    out_handle: T.handle):  # TVMScript: a buffer's type is a call
        T.func_attr({"tirx.noalias": True})
        rows = T.int64()
        x = T.match_buffer(x_handle, (rows, k), "float32")
        out = T.match_buffer(out_handle, (rows, n), "float32")
        xq = T.decl_buffer((rows, k), "int8")
        x_scale = T.decl_buffer((rows, groups), "float32")
        terms = T.decl_buffer((rows, groups, lanes), "int32")
        top = T.decl_buffer((1,), "float32", scope="local")
        for i in range(rows):
            round_row(x, xq, x_scale, terms, top, i)
        for outer in T.parallel(tasks):
            # declared in the parallel body: one per task (see rowdot_kernel)
            sums = T.decl_buffer((VNNI_COLUMNS * lanes,), "int32", scope="local")
            partial = T.decl_buffer((VNNI_COLUMNS * lanes,), "float32", scope="local")
            count = T.min(TASK_COLUMNS, n - outer * TASK_COLUMNS)
            for i in range(rows):
                if count >= VNNI_COLUMNS:
                    for block in range((count + VNNI_COLUMNS - 1) // VNNI_COLUMNS):
                        first = outer * TASK_COLUMNS + T.min(block * VNNI_COLUMNS,
                                                             count - VNNI_COLUMNS)
                        totals(xq, x_scale, terms, w, scale, sums, partial, i, first,
                               VNNI_COLUMNS)
                        out.vstore([i, first], lane_sums_of_4(
                            [partial[acc(c)] for c in range(VNNI_COLUMNS)], lanes))
                else:
                    for column in range(count):
                        totals(xq, x_scale, terms, w, scale, sums, partial, i,
                               outer * TASK_COLUMNS + column, 1)
                        out[i, outer * TASK_COLUMNS + column] = T.float32(0)
                        for lane in range(lanes):
                            out[i, outer * TASK_COLUMNS + column] = (
                                out[i, outer * TASK_COLUMNS + column] + partial[lane])

    return rowdot_vnni
