"""`python -m tinyasr.schedules.bench.sparsity`: the BSR kernels against the dense ones of the
same layer, timed here, and where the int8 BSR kernel stops winning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyasr.schedules.bench import sparsity


def test_sparsity_bench_times_every_kernel_and_reports_the_crossover(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sparsity, "SHAPES", ((64, 32),))
    monkeypatch.setattr(sparsity, "DENSITIES", (0.1, 1.0))
    assert sparsity.main(["--out", str(tmp_path), "--targets", "host,x86-64-v3",
                          "--number", "2", "--repeat", "2"]) == 0
    report = json.loads((tmp_path / "sparsity.json").read_text())
    assert [t["target"] for t in report["targets"]] == ["host", "x86-64-v3"]
    for target in report["targets"]:
        (shape,) = target["shapes"]
        assert shape["dense_int8_ms"] > 0 and shape["dense_fp32_ms"] > 0
        assert [round(p["density"], 1) for p in shape["bsr"]] == [0.1, 1.0]
        faster = [p["density"] for p in shape["bsr"]
                  if p["int8_ms"] < shape["dense_int8_ms"]]
        assert shape["int8_crossover_density"] == (max(faster) if faster else None)
    assert "x86-64-v3** (avx2)" in (tmp_path / "sparsity.md").read_text()
    assert (tmp_path / "sparsity.png").read_bytes()[:4] == b"\x89PNG"
