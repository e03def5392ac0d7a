"""exp and log of float32 as polynomials in plain TIR arithmetic, for scalars or vectors of
`lanes` lanes: LLVM has no vector exp or log without a vector math library, so TVM's exp and
log become one libm call (expf, logf) per element, which keeps a loop scalar. The hand-written
kernels compute them with these (softmax.py, int8_attention.py, log_cmvn.py).

    exp(x) = 2^k p(f),  x = k ln 2 + f, |f| <= ln 2 / 2, x clamped to float32's range
    log(x) = e ln 2 + log(m),  x = m 2^e, m in [sqrt(1/2), sqrt(2)), log(m) = log(1 + g)
             = g - g^2 / 2 + g^3 q(g),  g = m - 1, ln 2 split in two for the product with e

p and q are Cephes' expf and logf polynomials. Measured against float64 (tests/
test_polynomials.py): log within 1.2e-7 relative (one float32 ulp), exp within 2.9e-7
(2.4 ulps, at the ends of its range, where k ln 2 is one float32 product). log(0) is -inf, log
of a negative number NaN, log(inf) inf; subnormal x are scaled by 2^23 first. exp saturates: 0
below -88.38, inf above 88.38.
"""

from __future__ import annotations

import math
from typing import cast

from tvm import tirx
from tvm.ir.expr import ExprWithOp
from tvm.script import tirx as T

EXP_LIMIT = 88.3762626647949   # float32's exp overflows above it, underflows below -it
EXP_POLYNOMIAL = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                  1.6666665459e-1, 5.0000001201e-1)   # Cephes expf, highest power first
LOG_POLYNOMIAL = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                  1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                  3.3333331174e-1)   # Cephes logf's q, highest power first
LN2_HIGH, LN2_LOW = 0.693359375, -2.12194440e-4   # ln 2 = high + low, high exact in few bits
SMALLEST_NORMAL = 1.17549435e-38
SUBNORMAL_SCALE = 23           # subnormal x: x * 2^23 is normal


def _splat(value: float, lanes: int, dtype: str = "float32") -> ExprWithOp:
    constant = tirx.const(value, dtype)
    return cast(ExprWithOp, constant if lanes == 1 else T.broadcast(constant, lanes))


def _typed(dtype: str, lanes: int) -> str:
    return dtype if lanes == 1 else f"{dtype}x{lanes}"


def exp_polynomial(x: tirx.Expr, lanes: int) -> tirx.Expr:
    """exp(x) of a float32 TIR expression of `lanes` lanes, as 2^k * p(f)."""
    clamped = T.max(T.min(x, _splat(EXP_LIMIT, lanes)), _splat(-EXP_LIMIT, lanes))
    k = T.floor(clamped * _splat(1 / math.log(2), lanes) + _splat(0.5, lanes))
    f = clamped - k * _splat(math.log(2), lanes)
    p = _splat(EXP_POLYNOMIAL[0], lanes)
    for coefficient in EXP_POLYNOMIAL[1:]:
        p = p * f + _splat(coefficient, lanes)
    exponent = T.Cast(_typed("int32", lanes), k) + _splat(127, lanes, "int32")
    power = T.reinterpret(_typed("float32", lanes),
                          T.shift_left(exponent, _splat(23, lanes, "int32")))
    return (p * f * f + f + _splat(1, lanes)) * power


def log_polynomial(x: tirx.Expr, lanes: int) -> tirx.Expr:
    """log(x) of a float32 TIR expression of `lanes` lanes, as e ln 2 + log(1 + g)."""
    x = cast(ExprWithOp, x)   # TVM's stubs give a TIR expression no operators
    subnormal = x < _splat(SMALLEST_NORMAL, lanes)
    normal = T.Select(subnormal, x * _splat(2.0 ** SUBNORMAL_SCALE, lanes), x)
    bits = T.reinterpret(_typed("int32", lanes), normal)
    # x = m' 2^e with m' in [1/2, 1): the exponent field less 126, the mantissa's bits under
    # the exponent of 1/2
    exponent = (T.Cast(_typed("float32", lanes), T.shift_right(bits, _splat(23, lanes, "int32"))
                       - _splat(126, lanes, "int32"))
                - T.Select(subnormal, _splat(SUBNORMAL_SCALE, lanes), _splat(0.0, lanes)))
    half_to_one = T.reinterpret(_typed("float32", lanes), T.bitwise_or(
        T.bitwise_and(bits, _splat(0x007FFFFF, lanes, "int32")),
        _splat(0x3F000000, lanes, "int32")))
    low = half_to_one < _splat(math.sqrt(0.5), lanes)   # m = 2 m', one power of 2 less
    exponent = exponent - T.Select(low, _splat(1.0, lanes), _splat(0.0, lanes))
    g = T.Select(low, half_to_one + half_to_one, half_to_one) - _splat(1.0, lanes)
    g2 = g * g
    q = _splat(LOG_POLYNOMIAL[0], lanes)
    for coefficient in LOG_POLYNOMIAL[1:]:
        q = q * g + _splat(coefficient, lanes)
    log = (g + (q * g * g2 + exponent * _splat(LN2_LOW, lanes) - _splat(0.5, lanes) * g2)
           + exponent * _splat(LN2_HIGH, lanes))
    infinity = _splat(math.inf, lanes)
    return T.Select(x > _splat(0.0, lanes), T.Select(x < infinity, log, infinity),
                    T.Select(x == _splat(0.0, lanes), -infinity, _splat(math.nan, lanes)))
