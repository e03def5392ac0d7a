"""int8 x int8 -> int32 matmul kernels with the per-channel requantize fused, one per dot ISA.

    out[i, n] = max(float(sum_k xq[i, k] * wq[n, k]) * x_scale[i] * w_scale[n] + bias[n], lower)

xq: activations rounded to int8 per row (dynamic); wq: weights int8 per output channel. The
weights are packed once, at compile time, as (ceil(N/L), K/G, L, G): L output lanes per vector
instruction, G products summed per lane by it; a last partial block of columns (the 31-word
output layers) is padded with zero weights and stored lane by lane. Each ISA gets the
instruction that does exactly that sum:

    avx512-vnni   vpdpbusd  L=16 G=4   u8 x s8: activations get their sign bit flipped (+128)
                                       and 128 * column sums (the same instruction on 0x80
                                       bytes, once per column block) are subtracted
    neon-dotprod  sdot      L=4  G=4   (Cortex-A76/A55: rpi5)
    avx2          vpmaddwd  L=8  G=2   x86 without VNNI (x86-64-v3, Zen 2/3): both sign-extended
                                       to int16 (the weights as loaded), products summed in
                                       pairs into int32, exact (|pair| <= 2 * 127 * 127)
    rvv           vwmacc    L=16 G=1   LLVM widens i8 products into i16/i32 accumulators
    generic       (scalar)  L=16 G=1   any other CPU: plain int32 loops

On targets with AMX int8 the VNNI template's space also holds tile kernels (int8_amx.py).

The dot-instruction kernels (G > 1) compute a register tile of R rows x T column blocks at a
time: by default 4 x up to 4, whose 16 independent accumulators keep the instruction's
pipeline full (one accumulator per row ran VNNI at 17% of its peak; the tile runs at 65-70%,
measured on an Intel Xeon), or as many as fit AVX2's 16 registers. The G=1 kernels take R rows
per weight vector loaded (default 1). (R, T) is the template's parameter
(compile/kernels/tunable.py), tuned per device.

Kernels take a symbolic row count (frames), K and N fixed per layer. The layer's bias and a
lower clamp (-inf, or 0 for a ReLU) are inputs: passes/fuse_epilogues.py moves the layer's bias
add and ReLU into the kernel's store (compile/kernels/epilogue.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from tvm import tirx
from tvm.ir.expr import ExprWithOp
from tvm.script import tirx as T
from tvm.target import Target, codegen

from tinyasr.compile.kernels.epilogue import EPILOGUE_ATTR
from tinyasr.compile.kernels.tunable import Params, Tunable, register_tiles

SIGN_BITS = -0x7F7F7F80   # 0x80808080 as int32: one 0x80 byte per lane of a 4-byte group


@dataclass(frozen=True)
class DotIsa:
    name: str
    lanes: int      # L: int32 results per instruction
    group: int      # G: int8 products summed into each of them
    registers: int  # vector registers (a G > 1 tile's accumulators, weights, offsets fit)

    def packed_shape(self, n: int, k: int) -> tuple[int, int, int, int]:
        return (-(-n // self.lanes), k // self.group, self.lanes, self.group)

    def supports(self, k: int) -> bool:
        return k % self.group == 0


VNNI = DotIsa("avx512-vnni", 16, 4, 32)
SDOT = DotIsa("neon-dotprod", 4, 4, 32)
AVX2 = DotIsa("avx2", 8, 2, 16)
RVV = DotIsa("rvv", 16, 1, 32)
GENERIC = DotIsa("generic", 16, 1, 16)


def dot_isa(target: Target) -> DotIsa:
    """The best int8 dot-product instruction set the target has."""
    with target:
        if codegen.target_has_features("avx512vnni"):
            return VNNI
        if codegen.target_has_features("dotprod"):
            return SDOT
        # Target.attrs is a reflected map; TVM's __getattr__ makes it look like a str
        mtriple = str(target.attrs.get("mtriple", ""))  # pyright: ignore[reportAttributeAccessIssue]
        if "riscv" in mtriple and codegen.target_has_features("v"):
            return RVV
        if codegen.target_has_features("avx2"):
            return AVX2
    return GENERIC


def _vnni(acc: tirx.Expr, a_group: tirx.Expr, b: tirx.Expr) -> tirx.Expr:
    return T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512", acc,
                                   T.reinterpret("int8x64", T.broadcast(a_group, 16)), b)


def _sdot(acc: tirx.Expr, a_group: tirx.Expr, b: tirx.Expr) -> tirx.Expr:
    return T.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.sdot.v4i32.v16i8", acc,
                                   T.reinterpret("int8x16", T.broadcast(a_group, 4)), b)


def _pmaddwd(acc: tirx.Expr, a_group: tirx.Expr, b: tirx.Expr) -> tirx.Expr:
    """acc + the pairwise sums of a_group's two int16 (one int32, broadcast) times b's 16
    int8 sign-extended to int16."""
    return acc + T.call_llvm_pure_intrin("int32x8", "llvm.x86.avx2.pmadd.wd",
                                         T.reinterpret("int16x16", T.broadcast(a_group, 8)),
                                         T.Cast("int16x16", b))


DOT_INSTRUCTIONS = {VNNI: _vnni, SDOT: _sdot, AVX2: _pmaddwd}


def _activation_group(isa: DotIsa, xq, row: ExprWithOp | int,
                      g: ExprWithOp | int) -> tirx.Expr:
    """Row `row`'s G activations of group g as the one int32 the dot instruction broadcasts:
    4 bytes, their sign bits flipped for VNNI (u8 operand), or 2 sign-extended int16 (AVX2)."""
    if isa is AVX2:
        return T.reinterpret("int32", T.Cast("int16x2", xq.vload([row, g * 2], "int8x2")))
    group = T.reinterpret("int32", xq.vload([row, g * 4], "int8x4"))
    return T.bitwise_xor(group, T.int32(SIGN_BITS)) if isa is VNNI else group


ROW_TILE = 4                # default rows per register tile of the dot-instruction kernels
BLOCK_TILES = (4, 3, 2, 1)  # default column blocks per tile: the first that divides the layer's
MAX_ROWS = 8                # rows per tile at most (dot-instruction kernels)
MAX_BLOCKS = 6              # column blocks per tile at most
WIDENING_ROWS = (1, 2, 3, 4)   # rows per tile of the G=1 kernels (default 1: one row at a time)


def int8_tiles(isa: DotIsa, n: int, k: int) -> list[Params]:
    """The template's space for a layer: (rows, blocks) tiles, the default first. G > 1: T
    dividing the blocks, the R * T accumulators, T weight vectors, T sign offsets (VNNI) and
    one broadcast within the vector registers. G=1: R rows of one block."""
    blocks = isa.packed_shape(n, k)[0]
    if isa.group == 1:
        return [{"rows": rows, "blocks": 1} for rows in WIDENING_ROWS]
    offsets = 1 if isa is VNNI else 0   # vectors of sign offsets per block
    fits = register_tiles(
        blocks, MAX_ROWS, MAX_BLOCKS,
        lambda rows, width: rows * width + (1 + offsets) * width + 1 <= isa.registers)
    default = (ROW_TILE, next(size for size in BLOCK_TILES if blocks % size == 0))
    if default not in fits:   # (AVX2's 16 registers) the most accumulators that fit
        default = fits[0]
    fits.remove(default)
    return [{"rows": rows, "blocks": width} for rows, width in [default, *fits]]


def requantize_store(n: int, lanes: int, blocks: int):
    """The fused requantize as a macro `store(out, acc, start, x_scale, w_scale, bias, lower,
    row, block)`: block `block` of row `row` from the int32 sums at acc[start:], vectorized over
    L lanes, the last partial block (n % L columns) lane by lane."""
    whole = n // lanes   # blocks of L columns; a last partial block has n % L

    @T.macro
    def requantize(out, acc, start, x_scale, w_scale, bias, lower, row, column, lane):
        out[row, column + lane] = T.max(
            T.Cast("float32", acc[start + lane]) * x_scale[row, 0] * w_scale[column + lane]
            + bias[column + lane], lower[()])

    @T.macro
    def requantize_vector(out, acc, start, x_scale, w_scale, bias, lower, row, block):
        for lane in T.vectorized(lanes):
            requantize(out, acc, start, x_scale, w_scale, bias, lower, row, block * lanes, lane)

    @T.macro
    def store(out, acc, start, x_scale, w_scale, bias, lower, row, block):
        """Block `block` of row `row`, from the int32 sums at acc[start:]: requantized."""
        if whole == blocks:
            requantize_vector(out, acc, start, x_scale, w_scale, bias, lower, row, block)
        elif block < whole:
            requantize_vector(out, acc, start, x_scale, w_scale, bias, lower, row, block)
        else:
            for lane in T.unroll(n - whole * lanes):
                requantize(out, acc, start, x_scale, w_scale, bias, lower, row, block * lanes,
                           lane)

    return store


def _kernel(isa: DotIsa, n: int, k: int, params: Params) -> tirx.PrimFunc:
    """G > 1 ISAs: a register tile of R rows x T blocks of L columns, so that R * T independent
    accumulators hide the dot instruction's latency (one accumulator chain per row and block
    ran at 17% of the VNNI peak); each weight vector loaded serves R rows, and rows past the
    last full tile take a one-row tile. The VNNI sign offsets of the tile's blocks are
    computed once per block.
    G=1 ISAs: for each block of L columns, for each tile of R rows, a vector multiply-add per
    row and k that LLVM widens (vwmacc on RVV). Both end in the fused requantize."""
    blocks, groups, lanes, group = isa.packed_shape(n, k)
    row_tile, tile = params["rows"], params["blocks"]
    if blocks % tile or (group == 1 and tile != 1):
        raise ValueError(f"{params}: not a tile of {isa.name} for {n} columns")
    accumulators = row_tile * tile
    dot = DOT_INSTRUCTIONS.get(isa, _sdot)   # (G > 1)
    activation = functools.partial(_activation_group, isa)
    sign_bits = SIGN_BITS if isa is VNNI else 0   # u8 activations = s8 with the sign bit flipped

    store = requantize_store(n, lanes, blocks)

    @T.macro
    def dot_tile(xq, w, x_scale, w_scale, bias, lower, out, acc, offset, outer, first, count):
        """`count` rows from row `first` times the tile's blocks: dot sums, then requantize."""
        for i in T.unroll(count * tile):
            acc[T.ramp(i * lanes, 1, lanes)] = T.broadcast(T.int32(0), lanes)
        for g in range(groups):
            for r in T.unroll(count):
                for b in T.unroll(tile):
                    acc[T.ramp((r * tile + b) * lanes, 1, lanes)] = dot(
                        acc[T.ramp((r * tile + b) * lanes, 1, lanes)],
                        activation(xq, first + r, g),
                        w.vload([outer * tile + b, g, 0, 0], f"int8x{lanes * group}"))
        for r in T.unroll(count):
            for b in T.unroll(tile):
                if sign_bits != 0:
                    acc[T.ramp((r * tile + b) * lanes, 1, lanes)] = (
                        acc[T.ramp((r * tile + b) * lanes, 1, lanes)]
                        - offset[T.ramp(b * lanes, 1, lanes)])
                store(out, acc, (r * tile + b) * lanes, x_scale, w_scale, bias, lower,
                      first + r, outer * tile + b)

    @T.macro
    def dot_tiles(xq, w, x_scale, w_scale, bias, lower, out, acc, offset, rows):
        for outer in range(blocks // tile):
            for b in T.unroll(tile):
                offset[T.ramp(b * lanes, 1, lanes)] = T.broadcast(T.int32(0), lanes)
                if sign_bits != 0:
                    for g in range(groups):
                        offset[T.ramp(b * lanes, 1, lanes)] = dot(
                            offset[T.ramp(b * lanes, 1, lanes)], T.int32(sign_bits),
                            w.vload([outer * tile + b, g, 0, 0], f"int8x{lanes * group}"))
            for full in range(rows // row_tile):
                dot_tile(xq, w, x_scale, w_scale, bias, lower, out, acc, offset, outer,
                         full * row_tile, row_tile)
            for row in range(rows // row_tile * row_tile, rows):
                dot_tile(xq, w, x_scale, w_scale, bias, lower, out, acc, offset, outer, row, 1)

    @T.macro
    def widening_tile(xq, w, x_scale, w_scale, bias, lower, out, acc, block, first, count):
        """`count` rows from row `first` times block `block`: widened sums, requantized."""
        for r in T.unroll(count):
            acc[T.ramp(r * lanes, 1, lanes)] = T.broadcast(T.int32(0), lanes)
        for j in range(k):
            for r in T.unroll(count):
                for lane in T.vectorized(lanes):
                    acc[r * lanes + lane] = acc[r * lanes + lane] + (
                        T.Cast("int32", xq[first + r, j]) * T.Cast("int32", w[block, j, lane, 0]))
        for r in T.unroll(count):
            store(out, acc, r * lanes, x_scale, w_scale, bias, lower, first + r, block)

    @T.macro
    def widening_rows(xq, w, x_scale, w_scale, bias, lower, out, acc, rows):
        for block in range(blocks):
            for full in range(rows // row_tile):
                widening_tile(xq, w, x_scale, w_scale, bias, lower, out, acc, block,
                              full * row_tile, row_tile)
            for row in range(rows // row_tile * row_tile, rows):
                widening_tile(xq, w, x_scale, w_scale, bias, lower, out, acc, block, row, 1)

    @T.macro
    def body(xq, w, x_scale, w_scale, bias, lower, out, rows):
        acc = T.alloc_buffer((accumulators * lanes,), "int32", scope="local")
        offset = T.alloc_buffer((tile * lanes,), "int32", scope="local")
        if group > 1:
            dot_tiles(xq, w, x_scale, w_scale, bias, lower, out, acc, offset, rows)
        else:
            widening_rows(xq, w, x_scale, w_scale, bias, lower, out, acc, rows)

    return int8_matmul_function(isa, n, k, body)


def int8_matmul_function(isa: DotIsa, n: int, k: int, body) -> tirx.PrimFunc:
    """The signature every int8 matmul kernel of `isa`'s packing has (the VNNI and AMX kernels
    are points of one template, so one call serves both): (xq (rows, k) int8, packed w,
    x_scale (rows, 1), w_scale (n,), bias (n,), lower ()) -> out (rows, n) float32, computed by
    the macro `body(xq, w, x_scale, w_scale, bias, lower, out, rows)`."""
    blocks, groups, lanes, group = isa.packed_shape(n, k)

    @T.prim_func(private=True)
    def kernel(xq_handle: T.handle, w_handle: T.handle, x_scale_handle: T.handle,
               w_scale_handle: T.handle, bias_handle: T.handle, lower_handle: T.handle,
               out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, EPILOGUE_ATTR: True})
        rows = T.int64()
        xq = T.match_buffer(xq_handle, (rows, k), "int8")
        w = T.match_buffer(w_handle, (blocks, groups, lanes, group), "int8")
        x_scale = T.match_buffer(x_scale_handle, (rows, 1), "float32")
        w_scale = T.match_buffer(w_scale_handle, (n,), "float32")
        bias = T.match_buffer(bias_handle, (n,), "float32")
        lower = T.match_buffer(lower_handle, (), "float32")
        out = T.match_buffer(out_handle, (rows, n), "float32")
        body(xq, w, x_scale, w_scale, bias, lower, out, rows)

    return kernel


def int8_matmul_kernel(isa: DotIsa, n: int, k: int,
                       params: Params | None = None) -> tirx.PrimFunc:
    """(xq (rows, k) int8, packed w, x_scale (rows, 1), w_scale (n,), bias (n,), lower ())
    -> (rows, n) float32; `params` the register tile (default: the first of `int8_tiles`)."""
    if not isa.supports(k):
        raise ValueError(f"{isa.name} needs k % {isa.group} == 0")
    return _kernel(isa, n, k, params or int8_tiles(isa, n, k)[0])


def int8_matmul_tunable(isa: DotIsa, n: int, k: int, amx: bool = False) -> Tunable:
    """The kernel as a template over its register tile; with `amx` (a VNNI target with AMX
    tiles) also over the tile kernels of compile/kernels/int8_amx.py, which take the same
    inputs and packed weights."""
    # int8_amx builds on this module's packing and requantize
    from tinyasr.compile.kernels.int8_amx import amx_int8_matmul_kernel, amx_points

    def make(params: Params) -> tirx.PrimFunc:
        if params.get("amx"):
            return amx_int8_matmul_kernel(n, k, params)
        return int8_matmul_kernel(isa, n, k, params)

    default, *others = int8_tiles(isa, n, k)
    tiles = amx_points(n, k) if amx and isa is VNNI else []   # timed right after the default
    return Tunable(f"int8_matmul_{isa.name.replace('-', '_')}_{n}x{k}", make,
                   (default, *tiles, *others))


def pack_weights(isa: DotIsa, wq: np.ndarray) -> np.ndarray:
    """(n, k) int8 weights -> the kernel's (ceil(n/L), k/G, L, G) layout."""
    n, k = wq.shape
    blocks, groups, lanes, group = isa.packed_shape(n, k)
    padded = np.zeros((blocks * lanes, k), np.int8)
    padded[:n] = wq
    return np.ascontiguousarray(padded.reshape(blocks, lanes, groups, group).transpose(0, 2, 1, 3))
