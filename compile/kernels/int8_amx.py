"""The int8 matmul on AMX tiles (Sapphire Rapids and later Xeons): the same inputs, packed
weights and fused requantize as the VNNI kernel (compile/kernels/int8.py), the sums made by
tdpbssd on tile registers instead of vpdpbusd on vectors.

Why: ONNX Runtime's int8 GEMM (MLAS) has AMX kernels (its CPU library holds ldtilecfg and
tdpbusd), so on an AMX Xeon the fastest peer multiplies on tiles; one tdpbssd is 16 x 16 x 64
products, 16 vpdpbusd's worth.

A tile register holds up to 16 rows of 64 bytes; there are 8. A step takes R tiles of 16
activation rows times T blocks of 16 output columns ((R, T): the template's parameter, R * T
accumulator tiles, each A tile loaded once for T products and each B tile once for R):

    C_rb (16 x 16 int32)  += A_r (16 rows x 64 int8 of k) . B_b (16 groups x 16 columns x 4 int8)

and the VNNI packing of the weights, (blocks, k/4, 16, 4), is already the B layout: a block's
next 64 k are 16 rows of 64 bytes. tdpbssd multiplies signed by signed, so the activations need
no sign flip and no column-sum offset. A k that 64 does not divide ends with one narrower
A and B of each (tiles of their own, so 2 x 2 only for k a multiple of 64); rows past the last
step take single row tiles, the last of them a second configuration with fewer rows. The C tiles
are stored to a small int32 buffer and requantized as the VNNI kernel's are.

Linux gives a process the tile registers only after it asks (arch_prctl ARCH_REQ_XCOMP_PERM for
XTILEDATA; without it the first tile instruction is SIGILL). The runners ask when they load a
deployable built with tile kernels (its manifest's `amx_tiles`), so a refusal is one line; the
kernel asks again at every call, for code that loads it otherwise (the tuner's timing workers):
one system call, which Linux answers from a flag once granted.

Not a default: the tile kernels join the VNNI kernel's template space on targets with amx-int8
(`amx_points`), so `tinyasr tune` times them on the device and compile uses one where it was
timed faster. They were written on a host without AMX (and the one x86 emulator with AMX code in
the registries, bochscpu-python 0.4.0, models a CPU without it): they are checked to build into
tile instructions, run everywhere with the tile operations emulated in plain TIR
(`emulated=True`: the same configurations, addresses and loops, with the hardware's shape rules
asserted), and run on the tiles themselves where the CPU has them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tvm import tirx
from tvm.script import tirx as T
from tvm.target import Target, codegen

from tinyasr.compile.kernels.int8 import VNNI, int8_matmul_function, requantize_store
from tinyasr.compile.kernels.tunable import Params
from tinyasr.targets.boards import ARCH_REQ_XCOMP_PERM, SYS_ARCH_PRCTL, XFEATURE_XTILEDATA

TILE_ROWS = 16          # rows of a tile register
TILE_BYTES = 64         # bytes per tile row
TILE_REGISTERS = 8
AMX_TILES = ((2, 2), (1, 2), (2, 1), (1, 1))   # (row tiles R, column blocks T): most C tiles first


@dataclass(frozen=True)
class TileLayout:
    """Which tile register holds what for R row tiles x T column blocks and a k whose last
    `rest` bytes (0: none) are narrower than a row: C_rb, then A_r, B_b, A_rest_r, B_rest_b."""
    rows: int    # R
    blocks: int  # T
    rest: int

    def c(self, r: int, b: int) -> int:
        return r * self.blocks + b

    def a(self, r: int) -> int:
        return self.rows * self.blocks + r

    def b(self, b: int) -> int:
        return self.rows * self.blocks + self.rows + b

    def a_rest(self, r: int) -> int:
        return self.b(self.blocks) + r

    def b_rest(self, b: int) -> int:
        return self.a_rest(self.rows) + b

    def registers(self) -> int:
        return self.b_rest(self.blocks) if self.rest else self.b(self.blocks)


def has_amx(target: Target) -> bool:
    """The target can run the tile kernels: AMX int8 tiles (and VNNI, whose packing they use)."""
    with target:
        return codegen.target_has_features("amx-tile") and codegen.target_has_features(
            "amx-int8") and codegen.target_has_features("avx512vnni")


def amx_points(n: int, k: int) -> list[Params]:
    """The tile kernels' points of the int8 template space for an (n, k) layer: the (R, T)
    whose T divides the weight's column blocks and whose tiles fit the 8 registers."""
    blocks = VNNI.packed_shape(n, k)[0]
    return [{"amx": 1, "rows": rows, "blocks": tile} for rows, tile in AMX_TILES
            if blocks % tile == 0
            and TileLayout(rows, tile, k % TILE_BYTES).registers() <= TILE_REGISTERS]


def configuration_words(layout: TileLayout) -> tuple[list[int], list[int]]:
    """The 64-byte tile configuration (palette 1) as 8 little-endian words, with every used
    tile's bytes per row (2 bytes at 16 + 2t) and rows (1 byte at 48 + t); and per word, the
    multiplier that places the call's row count into the rows bytes of the C and A tiles
    (their rows are 16, or the rows left past the last 16)."""
    config, rows = bytearray(64), bytearray(64)
    rest = layout.rest
    used = [(layout.c(r, b), None, TILE_BYTES) for r in range(layout.rows)
            for b in range(layout.blocks)]
    used += [(layout.a(r), None, TILE_BYTES) for r in range(layout.rows)]
    used += [(layout.b(b), TILE_ROWS, TILE_BYTES) for b in range(layout.blocks)]
    if rest:
        used += [(layout.a_rest(r), None, rest) for r in range(layout.rows)]
        used += [(layout.b_rest(b), rest // 4, TILE_BYTES) for b in range(layout.blocks)]
    config[0] = 1
    for number, tile_rows, row_bytes in used:
        config[16 + 2 * number:18 + 2 * number] = row_bytes.to_bytes(2, "little")
        if tile_rows is None:
            rows[48 + number] = 1
        else:
            config[48 + number] = tile_rows
    words = [int.from_bytes(config[i:i + 8], "little") for i in range(0, 64, 8)]
    multipliers = [int.from_bytes(rows[i:i + 8], "little") for i in range(0, 64, 8)]
    return words, multipliers


def _tile_instructions(k: int) -> dict[str, Callable]:
    """The tile operations the kernel is written in, as AMX instructions: ask Linux for the
    tile registers, load a configuration, zero a tile, load activation rows (stride k) or
    weight groups (stride 64), multiply-accumulate, store an int32 tile (stride 64), release."""

    def intrinsic(name: str, *args) -> tirx.Expr:
        return T.call_llvm_intrin("void", f"llvm.x86.{name}", *args)

    @T.macro
    def request(tiles):
        T.evaluate(T.call_extern("int64", "syscall", T.int64(SYS_ARCH_PRCTL),
                                 T.int64(ARCH_REQ_XCOMP_PERM), T.int64(XFEATURE_XTILEDATA)))

    @T.macro
    def load_config(tiles, config):
        T.evaluate(intrinsic("ldtilecfg", T.address_of(config[0])))

    @T.macro
    def zero(tiles, t):
        T.evaluate(intrinsic("tilezero", T.uint8(t)))

    @T.macro
    def load_rows(tiles, t, xq, row, column):
        T.evaluate(intrinsic("tileloadd64", T.uint8(t), T.address_of(xq[row, column]),
                             T.int64(k)))

    @T.macro
    def load_groups(tiles, t, w, block, group):
        T.evaluate(intrinsic("tileloadd64", T.uint8(t), T.address_of(w[block, group, 0, 0]),
                             T.int64(TILE_BYTES)))

    @T.macro
    def dot(tiles, c, a, b):
        T.evaluate(intrinsic("tdpbssd", T.uint8(c), T.uint8(a), T.uint8(b)))

    @T.macro
    def store(tiles, t, acc, start):
        T.evaluate(intrinsic("tilestored64", T.uint8(t), T.address_of(acc[start]),
                             T.int64(TILE_BYTES)))

    @T.macro
    def release(tiles):
        T.evaluate(intrinsic("tilerelease"))

    return {"request": request, "load_config": load_config, "zero": zero,
            "load_rows": load_rows, "load_groups": load_groups, "dot": dot, "store": store,
            "release": release}


def _tile_emulation() -> dict[str, Callable]:
    """The same operations in plain TIR on a register file in memory, with the hardware's shape
    rules asserted (tiles within the configuration, tdpbssd's operand shapes, loads within
    their buffers): the kernel's configurations, addressing and tails then run, and are
    checked, on any CPU. The registers are the kernel's `tile_bytes` (8 x 16 x 64 int8: A and
    B), `tile_words` (8 x 16 x 16 int32: C) and `tile_shapes` (rows, bytes per row)."""

    @T.macro
    def request(tiles):
        T.evaluate(0)

    @T.macro
    def load_config(tiles, config):
        assert config[0] % T.uint64(256) == T.uint64(1), "tile configuration: palette 1"
        for t in range(8):
            tiles[2][t, 0] = T.Cast("int32", (config[6] >> T.Cast("uint64", 8 * t))
                                       % T.uint64(256))
            tiles[2][t, 1] = T.Cast("int32", (config[2 + t // 4]
                                                 >> T.Cast("uint64", 16 * (t % 4)))
                                       % T.uint64(65536))
            assert tiles[2][t, 0] <= TILE_ROWS and tiles[2][t, 1] <= TILE_BYTES, \
                "tile configuration: a tile over 16 rows or 64 bytes"

    @T.macro
    def zero(tiles, t):
        for r, c in T.grid(TILE_ROWS, TILE_ROWS):
            tiles[1][t, r, c] = 0

    @T.macro
    def load_rows(tiles, t, xq, row, column):
        assert row + T.Cast("int64", tiles[2][t, 0]) <= xq.shape[0] and (
            column + tiles[2][t, 1] <= xq.shape[1]), "tile load past the activations"
        for r, c in T.grid(tiles[2][t, 0], tiles[2][t, 1]):
            tiles[0][t, r, c] = xq[row + r, column + c]

    @T.macro
    def load_groups(tiles, t, w, block, group):
        assert block < w.shape[0] and group + tiles[2][t, 0] <= w.shape[1] and (
            tiles[2][t, 1] == TILE_BYTES), "tile load past the weights"
        for r, c in T.grid(tiles[2][t, 0], tiles[2][t, 1]):
            tiles[0][t, r, c] = w[block, group + r, c // 4, c % 4]

    @T.macro
    def dot(tiles, c, a, b):
        assert tiles[2][c, 0] == tiles[2][a, 0] and tiles[2][c, 1] == tiles[2][
            b, 1] and tiles[2][a, 1] == 4 * tiles[2][b, 0] and tiles[2][c, 0] > 0, \
            "tdpbssd: operand shapes do not match"
        for m, j, i in T.grid(tiles[2][c, 0], tiles[2][c, 1] // 4, tiles[2][a, 1]):
            tiles[1][c, m, j] = tiles[1][c, m, j] + T.Cast(
                "int32", tiles[0][a, m, i]) * T.Cast("int32", tiles[0][b, i // 4, j * 4 + i % 4])

    @T.macro
    def store(tiles, t, acc, start):
        for m, j in T.grid(tiles[2][t, 0], tiles[2][t, 1] // 4):
            acc[start + m * TILE_ROWS + j] = tiles[1][t, m, j]

    @T.macro
    def release(tiles):
        T.evaluate(0)

    return {"request": request, "load_config": load_config, "zero": zero,
            "load_rows": load_rows, "load_groups": load_groups, "dot": dot, "store": store,
            "release": release}


def amx_int8_matmul_kernel(n: int, k: int, params: Params,
                           emulated: bool = False) -> tirx.PrimFunc:
    """The VNNI kernel's function on tiles: (xq (rows, k) int8, packed w, x_scale (rows, 1),
    w_scale (n,), bias (n,), lower ()) -> (rows, n) float32; params {"amx": 1, "rows": R,
    "blocks": T}. `emulated`: the tile operations in plain TIR (_tile_emulation), to check the
    kernel on a CPU without AMX."""
    blocks, _, lanes, _ = VNNI.packed_shape(n, k)
    if params not in amx_points(n, k) or k % 4:
        raise ValueError(f"{params}: not an AMX tile for {n} x {k}")
    chunks, rest = divmod(k, TILE_BYTES)
    layout = TileLayout(params["rows"], params["blocks"], rest)
    row_tiles, tile = layout.rows, layout.blocks
    requantize = requantize_store(n, lanes, blocks)
    ops = _tile_emulation() if emulated else _tile_instructions(k)
    request, load_config, zero, load_rows, load_groups, dot, store, release = (
        ops[name] for name in ("request", "load_config", "zero", "load_rows", "load_groups",
                               "dot", "store", "release"))
    # the emulation's register file: A/B bytes, C words, (rows, bytes per row) of each tile
    registers = (((TILE_REGISTERS, TILE_ROWS, TILE_BYTES), (TILE_REGISTERS, TILE_ROWS, TILE_ROWS),
                  (TILE_REGISTERS, 2)) if emulated
                 else ((1,), (1,), (1,)))   # unused on the hardware
    words, multipliers = configuration_words(layout)
    step_rows = row_tiles * TILE_ROWS

    @T.macro
    def configure(config, rows):
        """The configuration for C and A tiles of `rows` (<= 16) rows."""
        config[0] = T.uint64(words[0])
        config[1] = T.uint64(words[1])
        config[2] = T.uint64(words[2])
        config[3] = T.uint64(words[3])
        config[4] = T.uint64(words[4])
        config[5] = T.uint64(words[5])
        config[6] = T.uint64(words[6]) + T.Cast("uint64", rows) * T.uint64(multipliers[6])
        config[7] = T.uint64(words[7]) + T.Cast("uint64", rows) * T.uint64(multipliers[7])

    @T.macro
    def multiply(tiles, xq, w, outer, first, column, used, a_tile, b_tile):
        """C_rb += `used` row tiles from `first` of xq's bytes from `column` (tiles a_tile + r)
        times those k of blocks outer * T + b (tiles b_tile + b)."""
        for r in T.unroll(used):
            load_rows(tiles, a_tile + r, xq, first + r * TILE_ROWS, column)
        for b in T.unroll(tile):
            load_groups(tiles, b_tile + b, w, outer * tile + b, column // 4)
        for r in T.unroll(used):
            for b in T.unroll(tile):
                dot(tiles, layout.c(r, b), a_tile + r, b_tile + b)

    @T.macro
    def step(tiles, xq, w, x_scale, w_scale, bias, lower, out, acc, outer, first, used, count):
        """`used` (<= R) row tiles of `count` (<= 16) rows each from `first` times blocks
        outer * T ...: tile sums, requantized."""
        for r in T.unroll(used):
            for b in T.unroll(tile):
                zero(tiles, layout.c(r, b))
        for chunk in range(chunks):
            multiply(tiles, xq, w, outer, first, chunk * TILE_BYTES, used, layout.a(0),
                     layout.b(0))
        if rest > 0:
            multiply(tiles, xq, w, outer, first, chunks * TILE_BYTES, used, layout.a_rest(0),
                     layout.b_rest(0))
        for r in T.unroll(used):
            for b in T.unroll(tile):
                store(tiles, layout.c(r, b), acc, layout.c(r, b) * TILE_ROWS * lanes)
        for r in T.unroll(used):
            for i in range(count):
                for b in T.unroll(tile):
                    requantize(out, acc, (layout.c(r, b) * TILE_ROWS + i) * lanes, x_scale,
                               w_scale, bias, lower, first + r * TILE_ROWS + i, outer * tile + b)

    @T.macro
    def body(xq, w, x_scale, w_scale, bias, lower, out, rows):
        acc = T.alloc_buffer((row_tiles * tile * TILE_ROWS * lanes,), "int32")
        full = T.alloc_buffer((8,), "uint64")   # tile configurations: 16 rows, the rest
        last = T.alloc_buffer((8,), "uint64")
        tile_bytes = T.alloc_buffer(registers[0], "int8")
        tile_words = T.alloc_buffer(registers[1], "int32")
        tile_shapes = T.alloc_buffer(registers[2], "int32")
        request((tile_bytes, tile_words, tile_shapes))
        configure(full, TILE_ROWS)
        configure(last, rows % TILE_ROWS)
        # each configuration loaded once per call (ldtilecfg is slow and zeroes every tile):
        # the whole tiles of all column blocks, then the last rows of all column blocks
        if rows >= TILE_ROWS:
            load_config((tile_bytes, tile_words, tile_shapes), full)
            for outer in range(blocks // tile):
                for whole in range(rows // step_rows):
                    step((tile_bytes, tile_words, tile_shapes), xq, w, x_scale, w_scale, bias,
                         lower, out, acc, outer, whole * step_rows, row_tiles, TILE_ROWS)
                for single in range(rows // step_rows * row_tiles, rows // TILE_ROWS):
                    step((tile_bytes, tile_words, tile_shapes), xq, w, x_scale, w_scale, bias,
                         lower, out, acc, outer, single * TILE_ROWS, 1, TILE_ROWS)
        if rows % TILE_ROWS > 0:
            load_config((tile_bytes, tile_words, tile_shapes), last)
            for outer in range(blocks // tile):
                step((tile_bytes, tile_words, tile_shapes), xq, w, x_scale, w_scale, bias, lower,
                     out, acc, outer, rows - rows % TILE_ROWS, 1, rows % TILE_ROWS)
        release((tile_bytes, tile_words, tile_shapes))

    return int8_matmul_function(VNNI, n, k, body)
