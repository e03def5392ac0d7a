"""`tinyasr footprint`: the bytes of each board's files and the static transcriber's peak memory,
and of the one program `compile --static` links, measured on a real build of a tiny model for
this machine."""

from __future__ import annotations

import json
from pathlib import Path

from tinyasr.scripts.cli import main


def test_footprint_reports_the_files_and_the_peak_memory_per_length(model_dir: Path,
                                                                    tmp_path: Path, capsys):
    out = tmp_path / "fp"
    assert main(["footprint", "--model", str(model_dir), "--boards", "host", "--lengths", "1,4",
                 "--mode", "ctc_greedy", "--out", str(out)]) == 0
    assert "footprint.md" in capsys.readouterr().out
    report = json.loads((out / "footprint.json").read_text())
    (row,) = report["boards"]
    assert row["board"] == "host" and not row["emulated"]
    assert set(row["bytes"]) == {"tinyasr-run-static", "model.so", "weights.bin"}
    assert row["total_bytes"] == sum(row["bytes"].values()) and min(row["bytes"].values()) > 0
    assert [point["seconds"] for point in row["peak_rss"]] == [1.0, 4.0]
    short, long = (point["peak_rss_mib"] for point in row["peak_rss"])
    assert 1 < short <= long < 1024   # VmHWM of a run that read more audio is not smaller
    # the one program (compile --static): no bigger than the three files but for alignment
    assert 0 < row["program_bytes"] <= row["total_bytes"] + (64 << 10)
    assert [point["seconds"] for point in row["program_peak_rss"]] == [1.0, 4.0]
    table = (out / "footprint.md").read_text()
    assert "| host (native) |" in table and "peak RSS 4 s MiB" in table
    assert "tinyasr-transcribe KiB" in table
    assert (out / "footprint.png").read_bytes()[:4] == b"\x89PNG"
