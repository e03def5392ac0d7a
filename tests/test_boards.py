"""Boards: the cross-built runtime + our RPC server under qemu, behind a real TVM tracker.

Every test uses real components: the runtime cross-built from the registries' sources, qemu-user,
TVM's tracker and TVM's Python RPC client. `pytest --tracker HOST:PORT` runs the session tests
on real boards instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tinyasr.model.common.errors import InputError
from tinyasr.targets.boards import Board, board_target, get_board
from tinyasr.targets.farm import free_port, parse_address
from tinyasr.targets.native_build import build_runtime
from tinyasr.targets.remote import load_library, request_session

BOARDS = ["rpi4", "k230"]   # one aarch64 and one riscv64 RVV board
SHAPE = (4, 16)


def tiny_library(board: Board, directory: Path) -> Path:
    """A small Relax function, y = relu(x @ w) + 1, compiled and linked for `board`."""
    import tvm
    from tvm import relax

    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(SHAPE, "float32"))
    w = relax.Var("w", relax.TensorType((SHAPE[1], SHAPE[1]), "float32"))
    with builder.function("main", [x, w]):
        with builder.dataflow():
            y = builder.emit(relax.op.nn.relu(relax.op.matmul(x, w)))
            out = builder.emit_output(relax.op.add(y, relax.const(1.0, "float32")))
        builder.emit_func_output(out)
    target = tvm.target.Target(board_target(board))
    executable = tvm.compile(builder.get(), target)
    path = directory / f"tiny-{board.name}.so"
    executable.export_library(str(path), fcompile=board.library_compiler())
    return path


def reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.maximum(x @ w, 0) + 1


@pytest.mark.parametrize("name", BOARDS)
def test_relax_vm_through_tvm_tracker_api(board, name, tmp_path):
    """TVM's own connect_tracker().request(key) reaches our server; the VM's outputs match numpy."""
    import tvm
    from tvm import relax, rpc

    board.start(get_board(name))
    host, port = parse_address(board.tracker, "tracker")
    remote = rpc.connect_tracker(host, port).request(name, session_timeout=300)
    rlib = load_library(remote, tiny_library(get_board(name), tmp_path), get_board(name))
    vm = relax.VirtualMachine(rlib, remote.cpu())
    rng = np.random.default_rng(0)
    x, w = (rng.standard_normal(s).astype("float32") for s in (SHAPE, (SHAPE[1], SHAPE[1])))
    out = vm["main"](tvm.runtime.tensor(x, remote.cpu()), tvm.runtime.tensor(w, remote.cpu()))
    np.testing.assert_allclose(out.numpy(), reference(x, w), rtol=1e-5, atol=1e-5)

    timer = vm.module.time_evaluator("invoke_stateful", remote.cpu(), number=2, repeat=3)
    vm.set_input("main", tvm.runtime.tensor(x, remote.cpu()), tvm.runtime.tensor(w, remote.cpu()))
    result = timer("main")
    assert len(result.results) == 3 and result.median > 0


def test_second_runtime_build_is_cached():
    board = get_board("rpi4")
    first = build_runtime(board)
    start = time.monotonic()
    second = build_runtime(board)
    assert second.directory == first.directory
    assert time.monotonic() - start < 10
    sizes = second.manifest["sizes"]
    assert {"lib/libtvm_ffi.so", "lib/libtvm_runtime.so", "bin/tinyasr-rpc-server"} <= set(sizes)
    arch = subprocess.run(["file", "-L", str(second.server)], capture_output=True, text=True)
    assert "aarch64" in arch.stdout


def test_random_fill_for_metaschedule(board):
    """MetaSchedule's RPC runner fills inputs on the board with this function."""
    import tvm

    remote = board("rpi4")
    tensor = tvm.runtime.empty((64,), "float32", remote.cpu())
    remote.get_function("tvm.contrib.random.random_fill_for_measure")(tensor)
    assert np.any(tensor.numpy() != 0)


def test_wrong_architecture_library_is_refused(board, tmp_path):
    remote = board("rpi4")
    riscv_library = tiny_library(get_board("k230"), tmp_path)
    with pytest.raises(InputError, match="riscv64.*aarch64"):
        load_library(remote, riscv_library, get_board("rpi4"))


def test_unreachable_tracker_fails_fast():
    start = time.monotonic()
    with pytest.raises(InputError, match="unreachable"):
        request_session(f"127.0.0.1:{free_port()}", "rpi4", wait=5)
    assert time.monotonic() - start < 10


def test_key_without_free_board_fails_within_bound(board):
    board.start(get_board("rpi4"))
    start = time.monotonic()
    with pytest.raises(InputError, match="no free board"):
        request_session(board.tracker, "no-such-board", wait=2)
    assert time.monotonic() - start < 10


def test_board_killed_mid_session_raises_not_hangs(board, tmp_path):
    if not board.emulated:
        pytest.skip("kills an emulated board")
    import tvm
    from tvm import relax

    rpi4 = get_board("rpi4")
    remote = board("rpi4")
    vm = relax.VirtualMachine(load_library(remote, tiny_library(rpi4, tmp_path), rpi4),
                              remote.cpu())
    x = tvm.runtime.tensor(np.ones(SHAPE, "float32"), remote.cpu())
    w = tvm.runtime.tensor(np.ones((SHAPE[1], SHAPE[1]), "float32"), remote.cpu())
    vm.set_input("main", x, w)
    timer = vm.module.time_evaluator("invoke_stateful", remote.cpu(), number=100000, repeat=100)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            timer("main")
            outcome.append(None)
        except Exception as error:  # the RPC error is what we expect
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    time.sleep(2)
    board.farm.down("rpi4")
    worker.join(timeout=30)
    assert not worker.is_alive(), "the RPC call hung after the board died"
    assert outcome and outcome[0] is not None


def test_board_cli_up_ls_down(tmp_path):
    """`tinyasr board up --count 2` runs a farm of one key that TVM's tracker query lists."""
    env = {**os.environ, "TINYASR_BOARDS": str(tmp_path)}

    def tinyasr(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "tinyasr.scripts.cli", "board", *args],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        tinyasr("up", "rpi4", "--count", "2")
        listing = tinyasr("ls").splitlines()
        assert sum(line.startswith("rpi4") for line in listing) == 2
        tracker = listing[0].split()[1]
        host, port = parse_address(tracker, "tracker")
        query = subprocess.run([sys.executable, "-m", "tvm.exec.query_rpc_tracker", "--host",
                                host, "--port", str(port)], capture_output=True, text=True)
        assert any(line.split()[:2] == ["rpi4", "2"] for line in query.stdout.splitlines())
    finally:
        assert "stopped 2" in tinyasr("down")
    assert tinyasr("ls") == ""


@pytest.mark.slow   # 80 + 20 MB of weights uploaded to an emulated k230: ~1 min with the board up
def test_rowdot_logits_kernels_on_rvv_board(board, tmp_path):
    """Whisper's logits kernels ((51864, 384) tied embedding) on the k230 under qemu, in one
    board session: fp32 (`--int8` off) and int8 rows with one scale per 128 columns (`--int8`).
    The fp32 kernel's partial sums were once one buffer shared by every parallel task, so the
    threads' sums mixed (18% of the logits wrong on one row, errors up to 105 for values up to
    84: the k230 int8 Whisper deployable's wrong transcript). fp32 sums of 384 products of
    N(0, 1) values are within 1e-4 of float64's; the int8 rows times their scales are the same
    sums of values up to 127x larger, so 127 x 1e-4 for those."""
    import tvm
    from tvm.target import Target

    from tinyasr.compile.kernels.fp32 import vector_unit
    from tinyasr.compile.kernels.rowdot import rowdot_int8_kernel, rowdot_kernel

    k230 = get_board("k230")
    target = Target(k230.llvm_target)
    n, k, group = 51864, 384, 128
    rng = np.random.default_rng(0)
    values = rng.integers(-127, 128, (n, k)).astype(np.int8)
    scale = rng.uniform(0.5, 1.0, (n, k // group)).astype(np.float32)
    weight = rng.standard_normal((n, k)).astype(np.float32)
    cases = [("fp32", rowdot_kernel(vector_unit(target), n, k), [weight],
              weight.astype(np.float64), 1e-4),
             ("int8", rowdot_int8_kernel(vector_unit(target), n, k, group), [values, scale],
              (values.astype(np.float64).reshape(n, k // group, group)
               * scale[:, :, None]).reshape(n, k), 127 * 1e-4)]
    remote = board("k230")
    for name, kernel, arrays, dense, atol in cases:
        path = tmp_path / f"rowdot_{name}.so"
        tvm.compile(tvm.IRModule({"rowdot": kernel.with_attr("global_symbol", "rowdot")}),
                    target).export_library(str(path), fcompile=k230.library_compiler())
        function = load_library(remote, path, k230)["rowdot"]
        w = [tvm.runtime.tensor(array, remote.cpu()) for array in arrays]
        for rows in (1, 3):   # a greedy step's one hypothesis, a few beams
            x = rng.standard_normal((rows, k)).astype(np.float32)
            out = tvm.runtime.tensor(np.zeros((rows, n), np.float32), remote.cpu())
            function(tvm.runtime.tensor(x, remote.cpu()), *w, out)
            expected = x.astype(np.float64) @ dense.T
            np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=atol, err_msg=name)


@pytest.mark.slow   # an emulated k230 and rpi4 through the tracker
@pytest.mark.parametrize("name", ["k230", "rpi4"])
def test_cached_attention_kernel_on_boards(board, name: str, tmp_path):
    """The decoder step's attention over its cache (compile/kernels/cached_attention.py) on
    RVV (k230) and NEON (rpi4) under qemu: its 4-lane shuffle sums and polynomial exponential
    on those ISAs give numpy's attention over each query's slots (fp32 against float64: 1e-5),
    whatever lies past them (NaN here)."""
    import tvm
    from tvm.target import Target

    from tinyasr.compile.kernels.cached_attention import cached_attention_kernel
    from tinyasr.compile.kernels.fp32 import vector_unit

    target_board = get_board(name)
    target = Target(target_board.llvm_target)
    slots, head_dim, scale = 448, 64, 0.125
    kernel = cached_attention_kernel(vector_unit(target), slots, head_dim, scale)
    remote = board(name)
    path = tmp_path / "cached_attention.so"
    tvm.compile(tvm.IRModule({"attend": kernel.with_attr("global_symbol", "attend")}),
                target).export_library(str(path), fcompile=target_board.library_compiler())
    function = load_library(remote, path, target_board)["attend"]
    rng = np.random.default_rng(1)
    for rows, positions in [(6, [30]), (6, [0, 1]), (12, [200, 201, 202])]:
        positions = np.array(positions, np.int64)
        q = rng.standard_normal((rows, len(positions), head_dim)).astype(np.float32)
        k, v = (rng.standard_normal((rows, slots, head_dim)).astype(np.float32) for _ in "kv")
        scores = np.einsum("ame,ane->amn", q.astype(np.float64), k) * scale
        scores = np.where(np.arange(slots)[None, None] <= positions[None, :, None], scores,
                          -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        expected = weights / weights.sum(-1, keepdims=True) @ v
        k[:, positions.max() + 1:] = v[:, positions.max() + 1:] = np.nan
        out = tvm.runtime.tensor(np.zeros(q.shape, np.float32), remote.cpu())
        function(*(tvm.runtime.tensor(a, remote.cpu()) for a in (q, k, v, positions)), out)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
