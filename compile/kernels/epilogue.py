"""The store step the matmul kernels (int8, fp32) end in: out = max(product + bias, lower).

A kernel marked with EPILOGUE_ATTR takes as its last two inputs a bias (N,) and a lower clamp
(a 0-d float): the rewrites that call it pass `identity_epilogue` (zero bias, -inf: the plain
product), and passes/fuse_epilogues.py replaces them by the layer's own bias and, when a ReLU
follows, 0. The bias add and the ReLU then cost no pass over memory of their own (on the int8
model 51 adds and ReLUs of encode and decode were separate functions; the encoder went 6.24 ->
5.76 ms side by side).
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax

EPILOGUE_ATTR = "tinyasr.epilogue"


@functools.cache
def identity_epilogue(n: int) -> tuple[tvm.ir.GenericConst, tvm.ir.GenericConst]:
    """(bias, lower) for the plain product: zeros and -inf. One pair per width, shared by every
    kernel call of that width: the executable's constant pool holds each once."""
    # relax.const takes numpy scalars too; TVM's annotation lists only Python and array types
    return (relax.const(np.zeros(n, np.float32)),
            relax.const(np.float32(-np.inf)))  # pyright: ignore[reportArgumentType]
