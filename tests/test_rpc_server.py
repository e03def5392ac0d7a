"""The board RPC server as a sandbox: each attack from the review, run against the real server.

The server is `tinyasr-rpc-server` from the board runtime build, started here without a tracker
(clients connect with its key) on a loopback port, its sessions in a work directory under
tmp_path; the client is TVM's own Python RPC client. By default it is the rpi4 build under
qemu-user (the suite builds it anyway); the host build runs too with `-m slow`.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tinyasr.model.common.errors import InputError
from tinyasr.targets.boards import Board, get_board
from tinyasr.targets.farm import Farm, emulator_prefix, free_port
from tinyasr.targets.native_build import PROJECT, build_runtime
from tinyasr.targets.remote import connect, request_session

KEY = "sandbox-test"
RPC_MAGIC = 0xFF271
START_SECONDS = 60.0


@pytest.fixture(scope="module", params=["rpi4", pytest.param("host", marks=pytest.mark.slow)])
def server_board(request) -> Board:
    return get_board(request.param)


def server_command(board: Board) -> list[str]:
    return [*emulator_prefix(board), str(build_runtime(board).server)]


class Server:
    """One running server: its port, process and session work directory."""

    def __init__(self, board: Board, work_dir: Path, *args: str):
        self.port = free_port()
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        standalone = [] if "--tracker" in args else ["--standalone"]
        self.process = subprocess.Popen(
            [*server_command(board), "--key", KEY, "--port", str(self.port), "--port-end",
             str(self.port + 1), "--work-dir", str(work_dir), *standalone, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.banner = self._read_banner()

    def _read_banner(self) -> str:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 1.0)
            if ready:
                line = self.process.stdout.readline()
                if "listening on" in line:
                    return line.strip()
            if self.process.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"server did not start: {self.process.stderr.read()}")

    def connect(self, key: str = KEY, timeout: float = 0.0, secret: str | None = None):
        return connect("127.0.0.1", self.port, key, timeout, secret)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def session_dir(self) -> Path:
        found = sorted(self.work_dir.glob("tinyasr-session-*"))
        assert len(found) == 1, found
        return found[0]

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@pytest.fixture
def start_server(server_board: Board, tmp_path: Path):
    servers: list[Server] = []

    def start(*args: str) -> Server:
        servers.append(Server(server_board, tmp_path / f"work{len(servers)}", *args))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_uploads_and_downloads_stay_in_the_session_directory(start_server, tmp_path: Path):
    server = start_server()
    remote = server.connect()
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clients")
    remote.upload(bytearray(b"fine"), "ok.txt")              # the ordinary case still works
    assert bytes(remote.download("ok.txt")) == b"fine"
    before = files_under(tmp_path)
    absolute = tmp_path / "absolute.txt"
    for target in ["../escape.txt", "../../escape.txt", "../../../../../../tmp/escape.txt",
                   "sub/../../escape.txt", "..", ".", str(absolute), "/tmp/escape.txt"]:
        with pytest.raises(Exception, match="refused"):
            remote.upload(bytearray(b"attack"), target)
    for target in ["../../secret.txt", str(secret), "/etc/passwd", "../" * 12 + "etc/passwd"]:
        with pytest.raises(Exception, match="refused"):
            remote.download(target)
    for target in ["../../secret.txt", str(secret)]:
        with pytest.raises(Exception, match="refused"):
            remote.remove(target)
    with pytest.raises(Exception, match="refused"):
        remote.load_module("../../secret.txt")
    assert files_under(tmp_path) == before
    assert secret.read_text() == "not for clients"
    assert not Path("/tmp/escape.txt").exists() and not absolute.exists()
    remote.remove("ok.txt")
    assert list(server.session_dir().iterdir()) == []
    for name in ["", "missing.so", "no-dir/missing.so"]:   # MetaSchedule's cleanup does these
        remote.remove(name)
    assert server.session_dir().is_dir()


def test_symlinks_out_of_the_session_directory_are_refused(start_server, tmp_path: Path):
    server = start_server()
    remote = server.connect()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("not for clients")
    session = server.session_dir()
    (session / "dir-link").symlink_to(outside)
    (session / "file-link").symlink_to(secret)
    (session / "dangling").symlink_to(outside / "created.txt")
    remote.upload(bytearray(b"fine"), "ok.txt")
    (session / "inner-link").symlink_to(session / "ok.txt")   # leads inside: allowed
    assert bytes(remote.download("inner-link")) == b"fine"

    for target in ["dir-link/x.txt", "file-link", "dangling"]:
        with pytest.raises(Exception, match="refused"):
            remote.upload(bytearray(b"attack"), target)
    for target in ["file-link", "dir-link/secret.txt"]:
        with pytest.raises(Exception, match="refused"):
            remote.download(target)
    with pytest.raises(Exception, match="refused"):
        remote.remove("dir-link/secret.txt")
    with pytest.raises(Exception, match="refused"):
        remote.load_module("file-link")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert secret.read_text() == "not for clients"
    remote.remove("file-link")                                 # the link goes, not its target
    assert secret.exists() and not (session / "file-link").is_symlink()


def test_silent_connection_does_not_block_another_client(start_server):
    server = start_server("--handshake-timeout", "6")
    silent = socket.create_connection(("127.0.0.1", server.port))
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(struct.pack("<ii", RPC_MAGIC, 100) + b"client:")   # and never the rest
    start = time.monotonic()
    remote = server.connect()
    remote.upload(bytearray(b"x"), "x")
    assert time.monotonic() - start < 5.0, "a silent client held up the next one"
    del remote                        # the session ends; the silent ones are still waiting
    for sock in (silent, half):       # dropped at the handshake timeout (6 s), not held forever
        sock.settimeout(20)
        assert sock.recv(1) == b""
        sock.close()
    assert time.monotonic() - start < 15


def test_max_session_ends_an_idle_session(start_server):
    """A client that got in and then idles holds the board at most --max-session seconds."""
    server = start_server("--max-session", "2")
    idle = server.connect()
    time.sleep(3)
    with pytest.raises(RuntimeError, match="session has expired"):
        idle.upload(bytearray(b"x"), "x")
    server.connect(timeout=60).upload(bytearray(b"x"), "x")   # the board is free again


@pytest.mark.parametrize("length", [2**31 - 1, 4097, -1])
def test_oversized_key_claim_is_refused_without_allocating(start_server, length: int):
    server = start_server()
    rss = server.rss_kib()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(struct.pack("<ii", RPC_MAGIC, length))
        assert sock.recv(4) == b""                    # closed, no answer
    assert server.rss_kib() - rss < 20 * 1024        # not the 2 GiB the client claimed
    remote = server.connect()                         # and the server still serves
    remote.upload(bytearray(b"x"), "x")


def test_help_exits_zero(server_board: Board):
    result = subprocess.run([*server_command(server_board), "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: tinyasr-rpc-server") and "--key" in result.stdout


def test_no_key_refuses_to_start(server_board: Board):
    result = subprocess.run(server_command(server_board), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tinyasr-rpc-server: error: --key KEY is required (see --help)"]


def test_no_tracker_refuses_to_start_unless_standalone(server_board: Board):
    """A server nobody announced is a mistake unless asked for: --standalone."""
    result = subprocess.run([*server_command(server_board), "--key", "k"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--tracker HOST:PORT" in line and "--standalone" in line


@pytest.mark.parametrize("args, named", [
    (["--key"], "--key"),
    (["--key", "k", "--port", "abc"], "--port"),
    (["--key", "k", "--port", "70000"], "--port"),
    (["--key", "k", "--port", "9000", "--port-end", "9000"], "--port-end"),
    (["--key", "k", "--tracker", "nohostport"], "--tracker"),
    (["--key", "k", "--tracker", "127.0.0.1:x"], "--tracker"),
    (["--key", "k", "--allow", "10.0.0.0/33"], "--allow"),
    (["--key", "k", "--allow", "example.com"], "--allow"),
    (["--key", "k", "--handshake-timeout", "-1"], "--handshake-timeout"),
    (["--key", "k", "--max-session", "0"], "--max-session"),
    (["--key", "k", "--work-dir", "/nonexistent/dir"], "--work-dir"),
    (["--key", "k", "--secret-file", "/nonexistent/secret"], "--secret-file"),
    (["--key", "two words"], "--key"),
    (["--key", "k", "--standalone", "--tracker", "127.0.0.1:9190"], "--standalone"),
    (["--key", "k", "--bogus", "1"], "--bogus"),
])
def test_bad_arguments_are_one_line_exit_2(server_board: Board, args: list[str], named: str):
    result = subprocess.run([*server_command(server_board), *args], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* shows them) of sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_binds_loopback_by_default_and_says_where(start_server):
    server = start_server()
    assert listening_addresses(server.port) == ["0100007F"]   # 127.0.0.1, nothing else
    assert f"listening on 127.0.0.1:{server.port} (ports tried {server.port}-{server.port})" \
        in server.banner


def test_allow_list(start_server):
    refused = start_server("--allow", "10.0.0.0/8,192.168.0.0/16")
    with pytest.raises(RuntimeError):       # TVM's client: the server hung up at once
        refused.connect()
    allowed = start_server("--allow", "10.0.0.0/8,127.0.0.0/8,::1")
    allowed.connect().upload(bytearray(b"x"), "x")


def test_secret_is_required_when_set(start_server, tmp_path: Path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret-word\n")
    server = start_server("--secret-file", str(secret_file))
    with pytest.raises(InputError, match="refused the session") as missing:
        server.connect()
    with pytest.raises(InputError, match="refused the session") as wrong:
        server.connect(secret="s3cret-wor")
    for error in (missing, wrong):
        assert "s3cret" not in str(error.value)
    remote = server.connect(timeout=60, secret="s3cret-word")
    remote.upload(bytearray(b"x"), "x")


def test_secret_through_a_tracker(server_board: Board, tmp_path: Path):
    """farm.up(secret=...) starts boards that demand it; request_session presents it."""
    farm = Farm(tmp_path / "farm")
    try:
        farm.up(server_board, build_runtime(server_board), secret="farm-secret")
        tracker = farm.tracker_address()
        with pytest.raises(InputError, match="refused the session"):
            request_session(tracker, server_board.name, wait=20, secret="")
        remote = request_session(tracker, server_board.name, wait=30, secret="farm-secret")
        remote.upload(bytearray(b"x"), "x")
    finally:
        farm.down()
    assert not list((tmp_path / "farm").glob("*.secret"))


def test_systemd_unit_passes_only_options_the_server_knows(tmp_path: Path):
    """The shipped unit's ExecStart, with its EnvironmentFile's variables filled in as the
    README does, is accepted by the server itself: every option exists and every value is well
    formed, so it goes on to the tracker (here a socket that answers with the wrong magic)."""
    unit = (PROJECT / "tinyasr-rpc-server.service").read_text()
    (exec_start,) = [line.split("=", 1)[1] for line in unit.splitlines()
                     if line.startswith("ExecStart=")]
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef\n")
    with socket.create_server(("127.0.0.1", 0)) as not_a_tracker:
        values = {"${TINYASR_KEY}": "rpi4",
                  "${TINYASR_TRACKER}": f"127.0.0.1:{not_a_tracker.getsockname()[1]}",
                  "${TINYASR_CUSTOM_ADDR}": "192.168.1.20", "${TINYASR_ALLOW}": "192.168.1.10",
                  "/etc/tinyasr/secret": str(secret), "/var/lib/tinyasr": str(tmp_path),
                  "--host 0.0.0.0": "--host 127.0.0.1"}   # a test listens on loopback only
        for name, value in values.items():
            assert name in exec_start, name
            exec_start = exec_start.replace(name, value)
        program, *args = exec_start.split()
        assert program == "/opt/tinyasr/bin/tinyasr-rpc-server"
        server = subprocess.Popen([*server_command(get_board("rpi4")), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        not_a_tracker.settimeout(60)
        connection, _ = not_a_tracker.accept()
        with connection:
            connection.recv(4)
            connection.sendall(struct.pack("<i", 0))
        _, err = server.communicate(timeout=60)
    assert server.returncode == 2 and "is not a TVM RPC tracker" in err, err
