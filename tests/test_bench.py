"""`tinyasr bench` on the tiny random model: every row really measured (PyTorch, ONNX Runtime,
TVM deployables, each in its own process), well-formed JSON with every field, Markdown and PNG.
Speed goals live in the bench's results, not here."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from tinyasr.model.compression.quantize import quantizable_layers
from tinyasr.model.network.compressed import write_compressed
from tinyasr.model.network.int8 import Activations, Quantization
from tinyasr.model.network.model_dir import save_model_dir
from tinyasr.schedules.bench.cpu import core_peak
from tinyasr.schedules.bench.rows import LengthResult, RowResult
from tinyasr.scripts.cli import main

ROWS = ["torch eager fp32", "torch dynamic int8", "ORT fp32", "ORT int8", "TVM fp32 baseline",
        "TVM fp32", "TVM int8", "TVM sparse+int8"]


def row_names(report: dict) -> list[str]:
    """Row names without the tuned/untuned label TVM rows get from their manifest."""
    return [re.sub(r" \((un)?tuned\)$", "", row["name"]) for row in report["rows"]]


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory, tiny_random_model) -> Path:
    model, tokenizer = tiny_random_model
    work = tmp_path_factory.mktemp("bench")
    save_model_dir(model, tokenizer, work / "fp32")
    write_compressed(work / "int8.tac", model, tokenizer, None,
                     Quantization(Activations.DYNAMIC, list(quantizable_layers(model))))
    assert main(["bench", "--fp32-model", str(work / "fp32"), "--int8-model",
                 str(work / "int8.tac"), "--lengths", "1,2", "--repeats", "1", "--rounds", "2",
                 "--out", str(work / "out")]) == 0
    return work / "out"


def test_bench_json_has_every_row_and_field(bench_out: Path):
    report = json.loads((bench_out / "bench.json").read_text())
    assert row_names(report) == ROWS
    assert report["lengths"] == [1.0, 2.0] and report["threads"] == 1
    assert report["rounds"] == 2 and report["repeats"] == 1
    assert report["best_peer"] in ROWS[:4]
    assert 1 <= report["rescoring"]["hypotheses"] <= report["rescoring"]["tree_nodes"]
    row_fields = {f.name for f in dataclasses.fields(RowResult)}
    length_fields = {f.name for f in dataclasses.fields(LengthResult)}
    rows = dict(zip(row_names(report), report["rows"], strict=True))
    for row in report["rows"]:
        assert set(row) == row_fields
        if row["name"] == "TVM sparse+int8":
            assert row["skipped"] == "no --sparse-model given" and row["scaling"] == []
            continue
        if row["name"] == "TVM fp32 baseline" and row["skipped"]:   # no tuning database applied
            assert rows["TVM fp32"]["tuned"] is False and row["scaling"] == []
            continue
        assert row["skipped"] is None
        assert row["encoder_ms"] > 0 and row["pipeline_ms"] >= row["encoder_ms"]
        assert row["rescoring_ms"] > 0 and row["rescoring_speedup_vs_best_peer"] > 0
        assert row["rtf"] > 0 and row["gflops"] > 0 and row["peak_fraction"] > 0
        assert row["peak_rss_bytes"] > 50 * 2**20 and row["artifact_bytes"] > 10_000
        assert row["encoder_speedup_vs_best_peer"] > 0
        if row["runtime"] == "tvm":
            assert row["name"].endswith("(tuned)" if row["tuned"] else "(untuned)")
            for kernels, builtins in (("top_kernels", "vm_builtins_ms"),
                                      ("rescoring_top_kernels", "rescoring_vm_builtins_ms")):
                top = row[kernels]
                assert 0 < len(top) <= 10 and row[builtins] > 0
                assert all(k["ms"] > 0 and k["calls"] >= 1 for k in top)
                assert not any(k["kernel"].startswith("vm.builtin.") for k in top)
                assert [k["ms"] for k in top] == sorted((k["ms"] for k in top), reverse=True)
                assert 0 < sum(k["share"] for k in top) <= 1
        else:
            assert row["tuned"] is None
            assert row["top_kernels"] == [] and row["vm_builtins_ms"] is None
            assert row["rescoring_top_kernels"] == [] and row["rescoring_vm_builtins_ms"] is None
        assert [set(point) for point in row["scaling"]] == [length_fields] * 2
        assert [round(point["seconds"]) for point in row["scaling"]] == [1, 2]
        assert row["scaling"][0]["flops"] < row["scaling"][1]["flops"]
    # the same random model, run by three runtimes, says the same thing
    assert rows["ORT fp32"]["transcript"] == rows["torch eager fp32"]["transcript"]
    assert rows["TVM fp32"]["transcript"] == rows["torch eager fp32"]["transcript"]


def test_bench_writes_markdown_and_png(bench_out: Path):
    table = (bench_out / "bench.md").read_text()
    rows = json.loads((bench_out / "bench.json").read_text())["rows"]
    for row in rows:
        assert f"| {row['name']} |" in table
    encoder = table.index("Top kernels (encoder, 5 s), TVM rows")
    rescoring = table.index("Top kernels (rescoring, 5 s), TVM rows")
    for kernels, field in ((table[encoder:rescoring], "top_kernels"),
                           (table[rescoring:], "rescoring_top_kernels")):
        for row in rows:
            assert (f"\n{row['name']}: VM builtins" in kernels) == bool(row[field])
            for kernel in row[field]:
                assert f"| {kernel['kernel']} |" in kernels
    assert (bench_out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(bench_out.glob(".*"))   # no temp files left


def test_core_peak_from_cpuinfo():
    peak = core_peak("flags\t\t: fpu sse2 avx2 fma avx512f\ncpu MHz\t\t: 2500.000\n")
    if peak.ghz == 2.5:   # no cpufreq directory: the clock came from this text
        assert peak.gflops == 16 * 2 * 2 * 2.5
    assert (peak.lanes, peak.vector_isa) == (16, "AVX-512")
    assert core_peak("Features\t: fp asimd\n").lanes == 4
    zen4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nflags\t\t: avx2 fma avx512f\n"
    assert core_peak(zen4).fma_units == 1          # one 512-bit FMA per cycle over two pipes
    assert core_peak(zen4.replace("avx512f", "")).fma_units == 2      # Zen 3: two 256-bit FMAs
