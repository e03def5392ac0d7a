"""`tinyasr rpc-test` on Whisper deployables: a board behind a TVM tracker (the host board of the
test farm: TVM's RPC server and runtime as a board runs them, without emulation's minutes per
30 s window) transcribes bundled samples, held to PyTorch's greedy transcripts (fp32: equal;
int8: compile/parity.py's text rule). tests/test_tinyasr_run.py runs Whisper on an emulated
rpi4 through tinyasr-run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyasr.model.data.datadir import read_data_dir, write_data_dir
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.scripts.cli import main
from tinyasr.targets.boards import get_board


@pytest.mark.slow   # compiles whisper-tiny.en (~30 s) and starts a board runtime
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_rpc_test_holds_whisper_to_pytorch(board, int8: bool, tmp_path: Path, capsys):
    from tinyasr.compile.whisper_deployable import build_whisper_deployable
    from tinyasr.model.whisper.convert import ensure_whisper_model

    host = get_board("host")
    lib = tmp_path / "lib"
    build_whisper_deployable(ensure_whisper_model(), host, lib, untuned=True, int8=int8)
    data = tmp_path / "data"
    shortest = sorted(read_data_dir(SAMPLES_DIR), key=lambda u: u.wav.stat().st_size)[:2]
    write_data_dir(data, shortest)
    board.start(host)
    capsys.readouterr()
    code = main(["rpc-test", str(lib), "--tracker", board.tracker, "--key", "host",
                 "--data", str(data), "--json", str(tmp_path / "results.json")])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out + captured.err
    rows = json.loads((tmp_path / "results.json").read_text())
    assert sorted(row["uid"] for row in rows) == sorted(u.uid for u in shortest)
    assert all(row["ok"] and row["board_text"] and row["frame_agreement"] is None
               for row in rows), rows
    if not int8:   # the same weights and sums up to float order: the same greedy tokens
        assert all(row["board_text"] == row["host_text"] for row in rows), rows
        assert all(row["max_abs_diff"] < 2e-2 for row in rows), rows
    assert "CER on board:" in out and out.count(" yes ") == 2, out
