"""Linear layers on block-sparse (BSR) weights become BSR kernels, or stay dense where that is
faster.

Pattern (tinyasr.compile.compressed_import.BsrLinear, as torch exports it and the importer
converts its `tinyasr::bsr_to_dense` node):

    matmul(x (rows, K) f32, permute_dims(W)),
        W = call_dps_packed(BSR_TO_DENSE, (data, indices, indptr))                  fp32
         or W = astype(that int8, f32) * expand_dims(scale, 1)                      int8

Rewrite, when the layer's density (nonzero blocks / all blocks) is at most `max_density` for
its values' dtype and the target's dot ISA:

    fp32:  out = call_tir(bsr_matmul_fp32 kernel, x, data, indices, indptr)
    int8:  xq, x_scale = x rounded to int8 per row (as for the dense int8 kernels)
           out = call_tir(bsr_matmul_int8 kernel, xq, data, indices, indptr, x_scale, scale)

The BSR arrays are function inputs that the kernel takes as they are: the weights file holds
them instead of the dense weight. A denser layer is left alone: its BSR_TO_DENSE is weight-only,
so the weights phase runs it once at compile time (a Python function registered under that name)
and the Int8Matmul pass or the fp32 matmul takes the dense weight. A batched matmul (a 3-D
input, as the decoder's cross-attention key/value had when it ran over every hypothesis) stays
dense too. Run this pass before Int8Matmul (which would take an int8 BSR layer's densified
weight) and DeadCodeElimination after it (the rewritten layers' BSR_TO_DENSE are then unused).
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from tinyasr.compile.kernels.bsr import bsr_matmul_kernel
from tinyasr.compile.kernels.int8 import AVX2, VNNI, DotIsa
from tinyasr.compile.passes.int8_matmul import Int8KernelRewriter, int8_weight, linear_weight
from tinyasr.compile.passes.rewriting import KernelPass, is_op
from tinyasr.model.network.compressed import from_bsr

BSR_TO_DENSE = "tinyasr.bsr_to_dense"

# Sparse kernel when the layer's density is at most this, else dense: where the BSR kernel
# (4x1 blocks) is faster than the dense kernel of the same values, measured at 128 rows (5 s) on
# the FFN shapes 144->576 and 576->144 by `python -m tinyasr.schedules.bench.sparsity`
# (model/pretrained/sparsity/, a 2-core AMD EPYC, Zen 4, one thread). fp32: the BSR kernel beats
# the dense fp32 kernel up to about 0.75 on both ISAs. int8: with AVX-512 VNNI the dense kernel
# (0.05 ms) beats the BSR one at every density down to 0.05 (0.06-0.08 ms), so int8 layers stay
# dense; with AVX2 (x86-64-v3, vpmaddwd) the dense kernel takes 0.19 ms and the BSR one wins up
# to about 0.6 (0.16 ms at 0.5, 0.19-0.21 at 0.75). Dot ISAs not measured on hardware (the
# boards' sdot, RVV and the scalar kernels: qemu's timings say nothing) keep 0.3.
MAX_DENSITY = {"float32": 0.75, "int8": 0.3}
INT8_MAX_DENSITY = {VNNI.name: 0.0, AVX2.name: 0.6}


def max_density(dtype: str, isa: DotIsa) -> float:
    """The density up to which a layer of `dtype` values takes the BSR kernel on `isa`."""
    if dtype == "int8":
        return INT8_MAX_DENSITY.get(isa.name, MAX_DENSITY["int8"])
    return MAX_DENSITY[dtype]


@tvm.register_global_func(BSR_TO_DENSE)
def _bsr_to_dense(data: tvm.runtime.Tensor, indices: tvm.runtime.Tensor,
                  indptr: tvm.runtime.Tensor, out: tvm.runtime.Tensor) -> None:
    """Fills `out` with the dense matrix: a dense-fallback layer's weight, at compile time."""
    out.copyfrom(from_bsr(data.numpy(), indices.numpy(), indptr.numpy(), tuple(out.shape)))


def import_bsr_to_dense(node: Any, importer: Any) -> relax.Var:
    """The importer's converter for torch's `tinyasr::bsr_to_dense` (custom_convert_map)."""
    data, indices, indptr, columns = importer.retrieve_args(node)
    _, block_r, _ = (int(d) for d in data.ty.shape.values)
    rows = (int(indptr.ty.shape.values[0]) - 1) * block_r
    return importer.block_builder.emit(relax.call_dps_packed(
        BSR_TO_DENSE, [data, indices, indptr], relax.TensorType([rows, columns], data.ty.dtype)))


def _bsr_arrays(weight: relax.Expr) -> list[relax.Expr] | None:
    """[data, indices, indptr] when `weight` is BSR_TO_DENSE of them."""
    if not (is_op(weight, "relax.call_dps_packed")
            and isinstance(weight.args[0], relax.ExternFunc)
            and weight.args[0].global_symbol == BSR_TO_DENSE):
        return None
    return list(weight.args[1].fields)


@mutator
class _Rewriter(Int8KernelRewriter):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        weight = linear_weight(call, self._bound)
        if weight is None:
            return call
        int8 = int8_weight(weight, self._bound)
        arrays = _bsr_arrays(self._bound(int8[0]) if int8 else weight)
        if arrays is None:
            return call
        data, indices, indptr = arrays
        n, k = (int(d) for d in weight.ty.shape.values)
        nnz, block_r, block_c = (int(d) for d in data.ty.shape.values)
        if nnz * block_r * block_c / (n * k) > max_density(str(data.ty.dtype), self.isa):
            return call
        x = call.args[0]
        index_dtype = str(indices.ty.dtype)
        name = (f"bsr_matmul_{'int8' if int8 else 'fp32'}_{n}x{k}_{block_r}x{block_c}"
                f"_nnz{nnz}_{index_dtype}")
        kernel = self._kernel(name, lambda: bsr_matmul_kernel(n, k, (block_r, block_c), nnz,
                                                              index_dtype, int8=bool(int8)))
        if int8:
            xq, x_scale = self.quantize_rows(x, x.ty.shape.values[0])
            args = [xq, data, indices, indptr, x_scale, int8[1]]
        else:
            args = [x, data, indices, indptr]
        return relax.call_tir(kernel, args, relax.TensorType([x.ty.shape.values[0], n], "float32"))


@tvm.transform.module_pass(opt_level=0, name="BsrMatmul")
class BsrMatmul(KernelPass):
    """The rewrite above (the BSR kernels are the same for every target; an int8 layer's input
    rounding is the target's quantize_rows kernel)."""

    rewriter = _Rewriter
