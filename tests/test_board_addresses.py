"""`tinyasr board up --tracker HOST:PORT` for a tracker on another machine: the boards listen
where that tracker's clients reach them and register that address, never loopback.

The "other machine" is this one's own network address (a tracker bound there, not to loopback):
a real TVM tracker, the rpi4 runtime's RPC server under qemu, and TVM's client through the
tracker. Skipped where this machine has no non-loopback IPv4 address.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyasr.scripts.cli import main
from tinyasr.targets.farm import check_tracker, free_port


def network_address() -> str | None:
    """This machine's address on its default route (no packet is sent: UDP connect only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))   # TEST-NET-1: routing only
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture
def network_tracker(tmp_path: Path):
    """A TVM tracker listening on this machine's network address only."""
    address = network_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", address,
                                "--port", str(port), "--port-end", str(port + 1), "--silent"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            check_tracker(address, port)
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.2)
    yield address, port
    process.kill()
    process.wait()


def test_boards_on_loopback_are_refused_for_a_tracker_elsewhere(capsys, monkeypatch, tmp_path):
    """Refused before anything starts (no tracker needs to run: nothing reaches it)."""
    monkeypatch.setenv("TINYASR_BOARDS", str(tmp_path / "boards"))
    address = network_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address")
    assert main(["board", "up", "rpi4", "--tracker", f"{address}:9190"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"--tracker {address}" in line and "--host" in line


@pytest.mark.slow   # a tracker (importing TVM) and a board under qemu: ~40 s
def test_boards_register_the_address_the_tracker_sees(network_tracker, capsys, monkeypatch,
                                                      tmp_path):
    """Listening on the network address, a board is registered there (not at 127.0.0.1) and a
    client of the tracker gets a working session on it."""
    from tvm import rpc

    monkeypatch.setenv("TINYASR_BOARDS", str(tmp_path / "boards"))
    monkeypatch.delenv("TINYASR_RPC_SECRET", raising=False)
    address, port = network_tracker
    try:
        assert main(["board", "up", "rpi4", "--tracker", f"{address}:{port}",
                     "--host", address]) == 0
        assert "warning: the boards listen on" in capsys.readouterr().err
        tracker = rpc.connect_tracker(address, port)
        (server,) = [s for s in tracker.summary()["server_info"] if s["key"] == "server:rpi4"]
        assert server["addr"][0] == address
        session = tracker.request("rpi4", session_timeout=120)
        session.upload(bytearray(b"reached"), "probe.txt")
        assert bytes(session.download("probe.txt")) == b"reached"
    finally:
        main(["board", "down"])
