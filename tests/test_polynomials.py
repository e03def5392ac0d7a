"""exp and log as polynomials (compile/kernels/polynomials.py), built into a vectorized loop for
this host: log within one float32 ulp of float64 over its range, exp within three, the special
values as libm gives them, and no libm call in the code."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.script import tirx as T
from tvm.target import Target

from tinyasr.compile.kernels.polynomials import exp_polynomial, log_polynomial
from tinyasr.targets.boards import host_target

SIZE = 4096
ULP = 2.0 ** -23   # float32's relative spacing at 1


def build(operation: str) -> tvm.runtime.Module:
    polynomial = log_polynomial if operation == "log" else exp_polynomial

    @T.prim_func
    def kernel(x: T.Buffer((SIZE,), "float32"), y: T.Buffer((SIZE,), "float32")):
        for i in T.vectorized(SIZE):
            y[i] = polynomial(x[i], 1)

    return tvm.compile(tvm.IRModule({"main": kernel}), Target(host_target()))


def run(operation: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.resize(values.astype(np.float32), SIZE)
    y = tvm.runtime.tensor(np.zeros(SIZE, np.float32))
    build(operation)["main"](tvm.runtime.tensor(x), y)
    return x, y.numpy()


def test_log_within_one_ulp_and_its_special_values():
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.uniform(0, 1, 1000), rng.uniform(0.7, 1.42, 1000),   # around the mantissa's split
        np.exp(rng.uniform(-87, 88, 1000)),                      # every exponent
        rng.uniform(1e-45, 1.1e-38, 200),                        # subnormal
        [0.0, -0.0, -1.0, np.inf, 1.0, np.finfo(np.float32).max]])
    x, y = run("log", values)
    finite = (x > 0) & np.isfinite(x)
    exact = np.log(x[finite].astype(np.float64))
    error = np.abs(y[finite] - exact) / np.maximum(np.abs(exact), 1.0)
    assert error.max() <= ULP, error.max()
    assert np.all(y[x == 0] == -np.inf) and np.all(np.isnan(y[x < 0]))
    assert np.all(y[x == np.inf] == np.inf) and np.all(y[x == 1] == 0)


def test_exp_within_three_ulps_and_saturates():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.uniform(-87, 88, 2000), rng.uniform(-1, 1, 1000),
                             [0.0, -200.0, -np.inf, 100.0]])
    x, y = run("exp", values)
    inside = np.abs(x) <= 87
    exact = np.exp(x[inside].astype(np.float64))
    assert (np.abs(y[inside] - exact) / exact).max() <= 3 * ULP
    assert np.all(y[x == 0] == 1) and np.all(y[x <= -200] == 0) and np.all(y[x == 100] > 1e38)


@pytest.mark.parametrize("operation", ["log", "exp"])
def test_vector_code_without_libm(operation: str):
    assembly = build(operation).mod.inspect_source("asm")
    assert f"{operation}f" not in assembly and "vmulps" in assembly
