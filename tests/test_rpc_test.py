"""`tinyasr rpc-test`: a compiled deployable on an emulated board matches the PyTorch reference."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tinyasr.compile.deployable import build_deployable
from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import read_data_dir, write_data_dir
from tinyasr.model.network.model_dir import save_model_dir
from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL, SAMPLES_DIR
from tinyasr.scripts.cli import main
from tinyasr.targets.boards import get_board
from tinyasr.targets.native_build import build_runtime
from tinyasr.targets.rpc_check import format_table, run_rpc_test


@pytest.fixture(scope="module")
def rpi4_deployable(tmp_path_factory: pytest.TempPathFactory, tiny_random_model) -> Path:
    """The tiny random-init model compiled for rpi4."""
    root = tmp_path_factory.mktemp("rpc_test")
    save_model_dir(*tiny_random_model, root / "model")
    build_deployable(root / "model", get_board("rpi4"), root / "rpi4")
    return root / "rpi4"


def test_rpc_test_on_an_emulated_rvv_board_matches_host(board, tmp_path_factory,
                                                        tiny_random_model, tmp_path):
    """riscv64 with RVV 1.0 (k230 under qemu-riscv64): log-probs and transcripts as on the host."""
    root = tmp_path_factory.mktemp("rpc_test_k230")
    save_model_dir(*tiny_random_model, root / "model")
    k230 = get_board("k230")
    build_deployable(root / "model", k230, root / "k230")
    board.start(k230)
    data = tmp_path / "data"
    write_data_dir(data, read_data_dir(SAMPLES_DIR)[:2])
    results = run_rpc_test(root / "k230", k230, board.tracker, "k230", data, None, repeat=1)
    assert len(results) == 2 and all(r.ok for r in results), format_table(results)


@pytest.mark.slow  # compiling the model takes minutes; the board tests cover the RPC path
def test_rpc_test_on_two_emulated_rpi4s_matches_host(board, rpi4_deployable, tmp_path):
    rpi4 = get_board("rpi4")
    board.start(rpi4)
    if board.emulated:  # a second board of the key: the utterances are spread over both
        board.farm.up(rpi4, build_runtime(rpi4), board.tracker)
    data = tmp_path / "data"
    write_data_dir(data, read_data_dir(SAMPLES_DIR)[:4])
    results = run_rpc_test(rpi4_deployable, rpi4, board.tracker, "rpi4", data,
                           tmp_path / "results.json")
    assert len(results) == 4 and all(r.ok for r in results), format_table(results)
    assert all(r.latency_ms > 0 for r in results)
    written = json.loads((tmp_path / "results.json").read_text())
    assert [r["uid"] for r in written] == [r.uid for r in results]


@pytest.mark.slow
def test_rpc_test_board_killed_names_the_utterance_and_keeps_results(board, rpi4_deployable,
                                                                     tmp_path):
    if not board.emulated:
        pytest.skip("kills an emulated board")
    rpi4 = get_board("rpi4")
    board.farm.down("rpi4")
    board.start(rpi4)  # exactly one board of the key
    data, results_json = tmp_path / "data", tmp_path / "results.json"
    write_data_dir(data, read_data_dir(SAMPLES_DIR)[:4])

    def kill_after_first_result() -> None:
        deadline = time.monotonic() + 300
        while not results_json.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        board.farm.down("rpi4")

    killer = threading.Thread(target=kill_after_first_result)
    killer.start()
    start = time.monotonic()
    with pytest.raises(InputError, match="utterance '.+' failed on a 'rpi4' board"):
        run_rpc_test(rpi4_deployable, rpi4, board.tracker, "rpi4", data, results_json,
                     request_wait=5)
    killer.join()
    assert time.monotonic() - start < 300
    assert 1 <= len(json.loads(results_json.read_text())) < 4


@pytest.mark.slow
def test_rpc_test_hung_board_misses_the_deadline_and_fails_clearly(board, rpi4_deployable,
                                                                   tmp_path):
    """A board that stops answering without closing its socket (SIGSTOP): the utterance fails
    after the deadline, naming it, instead of hanging the harness."""
    if not board.emulated:
        pytest.skip("stops an emulated board")
    rpi4 = get_board("rpi4")
    board.farm.down("rpi4")
    board.start(rpi4)
    (hung,) = [p for p in board.farm.boards() if p.name == "rpi4"]
    data = tmp_path / "data"
    write_data_dir(data, read_data_dir(SAMPLES_DIR)[:1])
    os.killpg(hung.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(InputError, match="utterance '.+' failed on a 'rpi4' board: "
                                             ".*(within 20 s|no free board)"):
            run_rpc_test(rpi4_deployable, rpi4, board.tracker, "rpi4", data, None,
                         request_wait=5, deadline=20)
        assert time.monotonic() - start < 120
    finally:
        os.killpg(hung.pid, signal.SIGCONT)
        board.farm.down("rpi4")


@pytest.mark.slow  # compiles the shipped model for rpi4, then 12 utterances under qemu: minutes
def test_rpc_test_of_the_shipped_int8_model_on_an_emulated_rpi4(board, tmp_path, capsys):
    """The README's path, as a user runs it: `tinyasr compile` of the shipped int8 model for
    rpi4, then `tinyasr rpc-test` on an emulated board, every bundled utterance. int8 parity is
    compile/parity.py's rule (the same most likely token on >= 95% of frames, transcripts at
    most one character in 20 apart), which holds on whichever CPU computes the reference."""
    from tinyasr.compile.parity import INT8_FRAME_AGREEMENT, texts_agree

    deployable, results = tmp_path / "rpi4-int8", tmp_path / "results.json"
    assert main(["compile", str(COMPRESSED_MODEL), "--target", "rpi4", "--out",
                 str(deployable), "-q"]) == 0
    board.start(get_board("rpi4"))
    assert main(["rpc-test", str(deployable), "--tracker", board.tracker, "--key", "rpi4",
                 "--json", str(results), "-q"]) == 0, capsys.readouterr().out
    rows = json.loads(results.read_text())
    assert [row["uid"] for row in rows] == [u.uid for u in read_data_dir(SAMPLES_DIR)]
    for row in rows:
        assert row["ok"] and row["frame_agreement"] >= INT8_FRAME_AGREEMENT, row
        assert texts_agree(row["board_text"], row["host_text"], int8=True), row
        assert row["latency_ms"] > 0
