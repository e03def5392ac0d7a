"""Block-sparse (BSR) matmul kernels: fp32, and int8 x int8 with exact integer sums and the
per-channel requantize fused.

    out[i, n] = sum over the nonzero blocks b of n's block row, c < C:
                    data[b, n % R, c] * x[i, indices[b] * C + c]
    int8:       (that integer sum) * x_scale[i] * w_scale[n]

The weight (N, K) is stored as BSR: data (nnz, R, C) the nonzero R x C blocks in row-major block
order, indices (nnz,) each block's column in blocks (uint8 or int32), indptr (N/R + 1,) int32
where each block row's blocks start. Any block shape works (4x1, 1x4, 4x4, 1x1, ...).

Vectorized over frames, not over the block: a tile of LANES input rows is transposed once into a
(K, LANES) scratch and the nonzero weights are widened once per call, then every nonzero weight
is one broadcast multiply-add into LANES accumulators, whatever the block shape. Each (c, r) of
the block has its own accumulator vector (summed over c at the end), so 4x1, 1x4 and 4x4 blocks
keep at least 4 independent multiply-add chains in flight (1x4 went from 0.14 to 0.105 ms at
density 0.3); 1x1 blocks have one chain and run 1.5-3x slower than 4x1.

int8 values are summed in fp32 when that is exact: int8 products are at most 127^2, so sums of up
to EXACT_FP32_SUM (1040) terms stay below 2^24. That is one fused multiply-add per weight
(vfmadd231ps with a broadcast operand), where int32 takes a multiply and an add (vpmulld,
vpaddd): measured 0.10 ms against 0.15 ms (576x144 at density 0.25, 125 frames). Wider layers
sum in int32. (A dot instruction such as vpdpbusd needs 4 consecutive k per output, which only
1x4-style blocks give; 4x1 blocks do not.)

The vector statements are explicit (ramp/broadcast), not vectorized loops: TVM lowers those to
predicated scalar loops on scalable-vector targets (RVV), where these give vfmacc.vf (fmla on
NEON).

Kernels take a symbolic row count (frames); N, K, the block shape and nnz are fixed per layer.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

LANES = 16   # frames per tile: one 512-bit vector of fp32/int32 (two 256-bit, four 128-bit)
EXACT_FP32_SUM = 2 ** 24 // 127 ** 2   # int8 x int8 sums of up to 1040 terms are exact in fp32


def bsr_matmul_kernel(n: int, k: int, block: tuple[int, int], nnz: int, index_dtype: str,
                      int8: bool) -> tirx.PrimFunc:
    """fp32: (x (rows, k), data, indices, indptr) -> (rows, n) float32;
    int8: (xq (rows, k) int8, data int8, indices, indptr, x_scale (rows, 1), w_scale (n,))."""
    block_r, block_c = block
    if n % block_r or k % block_c:
        raise ValueError(f"a {block_r}x{block_c} block does not tile a {n}x{k} weight")
    block_rows = n // block_r
    dtype = "int8" if int8 else "float32"
    acc_dtype = "int32" if int8 and k > EXACT_FP32_SUM else "float32"

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, data_handle: T.handle, indices_handle: T.handle,
               indptr_handle: T.handle, x_scale_handle: T.handle, w_scale_handle: T.handle,
               out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        rows = T.int64()
        x = T.match_buffer(x_handle, (rows, k), dtype)
        data = T.match_buffer(data_handle, (nnz, block_r, block_c), dtype)
        indices = T.match_buffer(indices_handle, (nnz,), index_dtype)
        indptr = T.match_buffer(indptr_handle, (block_rows + 1,), "int32")
        x_scale = T.match_buffer(x_scale_handle, (rows, 1), "float32")
        w_scale = T.match_buffer(w_scale_handle, (n,), "float32")
        out = T.match_buffer(out_handle, (rows, n), "float32")
        tile_x = T.alloc_buffer((k, LANES), acc_dtype)
        weights = T.alloc_buffer((nnz, block_r, block_c), acc_dtype)
        acc = T.alloc_buffer((block_c, block_r, LANES), acc_dtype, scope="local")
        for b, r, c in T.grid(nnz, block_r, block_c):
            weights[b, r, c] = T.Cast(acc_dtype, data[b, r, c])
        for tile in range((rows + LANES - 1) // LANES):
            for lane in range(LANES):
                for j in range(k):
                    tile_x[j, lane] = T.if_then_else(
                        tile * LANES + lane < rows,
                        T.Cast(acc_dtype, x[T.min(tile * LANES + lane, rows - 1), j]),
                        T.Cast(acc_dtype, 0))
            for block_row in range(block_rows):
                for c, r in T.grid(block_c, block_r):
                    acc[c, r, T.ramp(0, 1, LANES)] = T.broadcast(T.Cast(acc_dtype, 0), LANES)
                for b in range(indptr[block_row], indptr[block_row + 1]):
                    for c in T.unroll(block_c):
                        for r in T.unroll(block_r):
                            acc[c, r, T.ramp(0, 1, LANES)] = (
                                acc[c, r, T.ramp(0, 1, LANES)]
                                + T.broadcast(weights[b, r, c], LANES)
                                * tile_x[T.Cast("int32", indices[b]) * block_c + c,
                                         T.ramp(0, 1, LANES)])
                for c in T.unroll(1, block_c):
                    for r in T.unroll(block_r):
                        acc[0, r, T.ramp(0, 1, LANES)] = (acc[0, r, T.ramp(0, 1, LANES)]
                                                          + acc[c, r, T.ramp(0, 1, LANES)])
                for r in T.unroll(block_r):
                    for lane in range(LANES):
                        if tile * LANES + lane < rows:
                            if int8:
                                out[tile * LANES + lane, block_row * block_r + r] = (
                                    T.Cast("float32", acc[0, r, lane])
                                    * x_scale[tile * LANES + lane, 0]
                                    * w_scale[block_row * block_r + r])
                            else:
                                out[tile * LANES + lane, block_row * block_r + r] = acc[0, r, lane]

    return kernel if int8 else _without_params(kernel, {"x_scale", "w_scale"})


def _without_params(function: tirx.PrimFunc, names: set[str]) -> tirx.PrimFunc:
    """`function` minus parameters its body does not use (the fp32 kernel has no scales)."""
    # PrimFunc's fields are reflected from C++, not declared in TVM's Python class
    params = [param for param in function.params  # pyright: ignore[reportAttributeAccessIssue]
              if param.name not in names]
    return tirx.PrimFunc(params, function.body,  # pyright: ignore[reportAttributeAccessIssue]
                         function.ret_type, function.attrs)  # pyright: ignore[reportAttributeAccessIssue]
