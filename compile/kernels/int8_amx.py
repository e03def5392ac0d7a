"""The int8 matmul on AMX tiles (Sapphire Rapids and later Xeons): the same inputs, packed
weights and fused requantize as the VNNI kernel (compile/kernels/int8.py), the sums made by
tdpbssd on tile registers instead of vpdpbusd on vectors.

Why: ONNX Runtime's int8 GEMM (MLAS) has AMX kernels (its CPU library holds ldtilecfg and
tdpbusd), so on an AMX Xeon the fastest peer multiplies on tiles; one tdpbssd is 16 x 16 x 64
products, 16 vpdpbusd's worth.

A tile register holds up to 16 rows of 64 bytes. Per tile of 16 activation rows and T blocks of
16 output columns (T = 1 or 2, the template's parameter):

    C_b (16 x 16 int32)  += A (16 rows x 64 int8 of k) . B_b (16 groups x 16 columns x 4 int8)

and the VNNI packing of the weights, (blocks, k/4, 16, 4), is already the B layout: a block's
next 64 k are 16 rows of 64 bytes. tdpbssd multiplies signed by signed, so the activations need
no sign flip and no column-sum offset. A k that 64 does not divide ends with one narrower
A and B pair; the rows past the last 16 take a second tile configuration with fewer rows. The
C tiles are stored to a small int32 buffer and requantized as the VNNI kernel's are.

Linux gives a process the tile registers only after it asks (arch_prctl ARCH_REQ_XCOMP_PERM for
XTILEDATA; without it the first tile instruction is SIGILL), so the kernel asks at every call:
one system call, which the kernel answers from a flag once granted.

Not a default: the tile kernels join the VNNI kernel's template space on targets with amx-int8
(`amx_points`), so `tinyasr tune` times them on the device and compile uses one where it was
timed faster. No machine this project has run on so far had AMX; the kernels are checked to
build into tile instructions here and run (against the VNNI kernel) on an AMX machine only.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T
from tvm.target import Target, codegen

from tinyasr.compile.kernels.epilogue import EPILOGUE_ATTR
from tinyasr.compile.kernels.int8 import VNNI, requantize_store
from tinyasr.compile.kernels.tunable import Params

TILE_ROWS = 16          # rows of a tile register
TILE_BYTES = 64         # bytes per tile row
AMX_BLOCKS = (2, 1)     # column blocks (C tiles) per tile: the parameter, 2 when it divides

# arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) as syscall(2) numbers (x86-64 Linux)
SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18

# tile registers: C_b = b, A = 2, B_b = 3 + b; the narrower k remainder A = 5, B_b = 6 + b
C_TILE, A_TILE, B_TILE, A_REST, B_REST = 0, 2, 3, 5, 6


def has_amx(target: Target) -> bool:
    """The target can run the tile kernels: AMX int8 tiles (and VNNI, whose packing they use)."""
    with target:
        return codegen.target_has_features("amx-tile") and codegen.target_has_features(
            "amx-int8") and codegen.target_has_features("avx512vnni")


def amx_points(n: int, k: int) -> list[Params]:
    """The tile kernels' points of the int8 template space for an (n, k) layer."""
    blocks = VNNI.packed_shape(n, k)[0]
    return [{"amx": 1, "blocks": tile} for tile in AMX_BLOCKS if blocks % tile == 0]


def configuration_words(tile: int, rest: int) -> tuple[list[int], list[int]]:
    """The 64-byte tile configuration (palette 1) as 8 little-endian words, with every used
    tile's bytes per row (2 bytes at 16 + 2t) and rows (1 byte at 48 + t); and per word, the
    multiplier that places the call's row count into the rows bytes of the C and A tiles
    (their rows are 16, or the rows left past the last 16)."""
    config, rows = bytearray(64), bytearray(64)
    used = [(C_TILE + b, None, TILE_BYTES) for b in range(tile)]
    used += [(A_TILE, None, TILE_BYTES)]
    used += [(B_TILE + b, TILE_ROWS, TILE_BYTES) for b in range(tile)]
    if rest:
        used += [(A_REST, None, rest)] + [(B_REST + b, rest // 4, TILE_BYTES)
                                          for b in range(tile)]
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


def amx_int8_matmul_kernel(n: int, k: int, params: Params) -> tirx.PrimFunc:
    """The VNNI kernel's function on tiles: (xq (rows, k) int8, packed w, x_scale (rows, 1),
    w_scale (n,), bias (n,), lower ()) -> (rows, n) float32; params {"amx": 1, "blocks": T}."""
    blocks, groups, lanes, _ = VNNI.packed_shape(n, k)
    tile = params["blocks"]
    if k % 4 or blocks % tile or tile not in AMX_BLOCKS:
        raise ValueError(f"{params}: not an AMX tile for {n} x {k}")
    chunks, rest = divmod(k, TILE_BYTES)
    store = requantize_store(n, lanes, blocks)

    def intrinsic(name: str, *args) -> tirx.Expr:
        return T.call_llvm_intrin("void", f"llvm.x86.{name}", *args)

    words, multipliers = configuration_words(tile, rest)

    @T.macro
    def configure(config, rows):
        """The configuration for tiles of `rows` (<= 16) rows."""
        for word in T.unroll(8):
            config[word] = T.uint64(0)
        config[0] = T.uint64(words[0])
        config[1] = T.uint64(words[1])
        config[2] = T.uint64(words[2])
        config[3] = T.uint64(words[3])
        config[4] = T.uint64(words[4])
        config[5] = T.uint64(words[5])
        config[6] = T.uint64(words[6]) + T.Cast("uint64", rows) * T.uint64(multipliers[6])
        config[7] = T.uint64(words[7]) + T.Cast("uint64", rows) * T.uint64(multipliers[7])

    @T.macro
    def multiply(xq, w, outer, first, column, a_tile, b_tile):
        """C_b += rows from `first` of xq's bytes from `column` (tile a_tile) times those k of
        blocks outer * T + b (tiles b_tile + b)."""
        T.evaluate(intrinsic("tileloadd64", T.uint8(a_tile), T.address_of(xq[first, column]),
                             T.int64(k)))
        for b in T.unroll(tile):
            T.evaluate(intrinsic("tileloadd64", T.uint8(b_tile + b),
                                 T.address_of(w[outer * tile + b, column // 4, 0, 0]),
                                 T.int64(TILE_BYTES)))
        for b in T.unroll(tile):
            T.evaluate(intrinsic("tdpbssd", T.uint8(C_TILE + b), T.uint8(a_tile),
                                 T.uint8(b_tile + b)))

    @T.macro
    def tile_rows(xq, w, x_scale, w_scale, bias, lower, out, acc, outer, first, count):
        """`count` (<= 16) rows from `first` times blocks outer * T ...: tile sums, requantized."""
        for b in T.unroll(tile):
            T.evaluate(intrinsic("tilezero", T.uint8(C_TILE + b)))
        for chunk in range(chunks):
            multiply(xq, w, outer, first, chunk * TILE_BYTES, A_TILE, B_TILE)
        if rest > 0:
            multiply(xq, w, outer, first, chunks * TILE_BYTES, A_REST, B_REST)
        for b in T.unroll(tile):
            T.evaluate(intrinsic("tilestored64", T.uint8(C_TILE + b),
                                 T.address_of(acc[b * TILE_ROWS * lanes]),
                                 T.int64(lanes * 4)))
        for r in range(count):
            for b in T.unroll(tile):
                store(out, acc, (b * TILE_ROWS + r) * lanes, x_scale, w_scale, bias, lower,
                      first + r, outer * tile + b)

    @T.prim_func(private=True)
    def kernel(xq_handle: T.handle, w_handle: T.handle, x_scale_handle: T.handle,
               w_scale_handle: T.handle, bias_handle: T.handle, lower_handle: T.handle,
               out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, EPILOGUE_ATTR: True})
        rows = T.int64()
        xq = T.match_buffer(xq_handle, (rows, k), "int8")
        w = T.match_buffer(w_handle, (blocks, groups, lanes, 4), "int8")
        x_scale = T.match_buffer(x_scale_handle, (rows, 1), "float32")
        w_scale = T.match_buffer(w_scale_handle, (n,), "float32")
        bias = T.match_buffer(bias_handle, (n,), "float32")
        lower = T.match_buffer(lower_handle, (), "float32")
        out = T.match_buffer(out_handle, (rows, n), "float32")
        acc = T.alloc_buffer((tile * TILE_ROWS * lanes,), "int32")
        full = T.alloc_buffer((8,), "uint64")   # tile configurations: 16 rows, the rest
        last = T.alloc_buffer((8,), "uint64")
        T.evaluate(T.call_extern("int64", "syscall", T.int64(SYS_ARCH_PRCTL),
                                 T.int64(ARCH_REQ_XCOMP_PERM), T.int64(XFEATURE_XTILEDATA)))
        configure(full, TILE_ROWS)
        configure(last, rows % TILE_ROWS)
        for outer in range(blocks // tile):
            if rows >= TILE_ROWS:
                T.evaluate(intrinsic("ldtilecfg", T.address_of(full[0])))
                for whole in range(rows // TILE_ROWS):
                    tile_rows(xq, w, x_scale, w_scale, bias, lower, out, acc, outer,
                              whole * TILE_ROWS, TILE_ROWS)
            if rows % TILE_ROWS > 0:
                T.evaluate(intrinsic("ldtilecfg", T.address_of(last[0])))
                tile_rows(xq, w, x_scale, w_scale, bias, lower, out, acc, outer,
                          rows - rows % TILE_ROWS, rows % TILE_ROWS)
        T.evaluate(intrinsic("tilerelease"))

    return kernel
