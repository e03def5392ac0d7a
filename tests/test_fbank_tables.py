"""The fbank's table kernels (compile/kernels/fbank_tables.py) against the tables training uses
(model/network/frontend.py): each value within one float32 ulp (both round the same float64
arithmetic once; only a libm and numpy differing in the last float64 bit at a rounding tie can
tell them apart), built by TVM for this machine."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from tinyasr.compile.kernels.fbank_tables import FBANK_TABLES
from tinyasr.model.network.frontend import Fbank


@pytest.mark.parametrize("name", sorted(FBANK_TABLES))
def test_table_kernel_matches_the_frontend(name: str):
    reference = getattr(Fbank(), name.removeprefix("p_fbank_")).numpy()
    kernel = FBANK_TABLES[name].with_attr("global_symbol", "table")
    library = tvm.compile(tvm.IRModule({"table": kernel}), target="llvm")
    made = tvm.runtime.tensor(np.full(reference.shape, np.nan, dtype=np.float32))
    library["table"](made)
    ulps = np.abs(made.numpy() - reference) / np.spacing(np.abs(reference))
    assert ulps.max() <= 1, f"{name}: {ulps.max()} ulps"
    assert np.count_nonzero(reference) > 100   # a table, not zeros
