"""Emulated boards behind a TVM RPC tracker: start, list and stop them across invocations.

Each board is our RPC server (`tinyasr-rpc-server`, from the board runtime build) running under
`qemu-<arch> -L <sysroot> -cpu ...` (the host board runs natively), registered with a tracker
under the board's name as its key. Everything listens on 127.0.0.1 unless told (`listen`):
boards registered with a tracker on another machine must listen where that tracker's clients
reach them, and register the address they are reached at (`custom_addr`; by default the one the
tracker sees them connect from). When no tracker is given, one is started on 127.0.0.1
(`python -m tvm.exec.rpc_tracker`). With a secret (`up(secret=...)`, or
$TINYASR_RPC_SECRET), each server gets it in a file only we can read (`--secret-file`) and
serves only clients that present it (`remote.request_session` does, from the same variable).
What runs is recorded in a small JSON state file (in $TINYASR_BOARDS, default
~/.cache/tinyasr/boards), so `board ls` and `board down` work from any later invocation.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tinyasr.model.common.atomic import atomic_write_text
from tinyasr.model.common.errors import InputError
from tinyasr.targets.boards import Board
from tinyasr.targets.native_build import CACHE_ROOT, SERVER_NAME, Runtime

LOOPBACK = "127.0.0.1"
TRACKER_MAGIC = 0x2F271
SECRET_ENV = "TINYASR_RPC_SECRET"  # a shared secret boards demand and clients present
STARTUP_SECONDS = 60.0      # qemu start-up plus registration; generous for a loaded machine


@dataclass
class Process:
    pid: int
    log: str

    def alive(self, marker: str) -> bool:
        """Whether `pid` still runs and is ours (its command line holds `marker`): pids get
        reused."""
        try:
            return marker in Path(f"/proc/{self.pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False

    def stop(self, marker: str) -> None:
        """Kill the process group (qemu and its forked session children) if it is still ours."""
        if self.alive(marker):
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@dataclass
class BoardProcess(Process):
    name: str = ""
    port: int = 0
    tracker: str = ""


@dataclass
class TrackerProcess(Process):
    address: str = ""


@dataclass
class FarmState:
    boards: list[BoardProcess] = field(default_factory=list)
    tracker: TrackerProcess | None = None   # only a tracker this module started

    @classmethod
    def from_json(cls, text: str) -> FarmState:
        data = json.loads(text)
        tracker = data.get("tracker")
        return cls([BoardProcess(**b) for b in data.get("boards", [])],
                   TrackerProcess(**tracker) if tracker else None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


class Farm:
    """The emulated boards recorded in one state directory."""

    def __init__(self, state_dir: Path | None = None):
        self.state_dir = Path(state_dir or os.environ.get("TINYASR_BOARDS", CACHE_ROOT / "boards"))
        self.state_file = self.state_dir / "state.json"

    @contextmanager
    def _locked_state(self) -> Iterator[FarmState]:
        """The state under an exclusive lock, written back (atomically) on exit; dead entries
        dropped."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = (FarmState.from_json(self.state_file.read_text())
                     if self.state_file.is_file() else FarmState())
            state.boards = [b for b in state.boards if b.alive(SERVER_NAME)]
            if state.tracker and not state.tracker.alive("rpc_tracker"):
                state.tracker = None
            yield state
            atomic_write_text(self.state_file, state.to_json())

    def boards(self) -> list[BoardProcess]:
        with self._locked_state() as state:
            return list(state.boards)

    def tracker_address(self) -> str | None:
        with self._locked_state() as state:
            return state.tracker.address if state.tracker else None

    def up(self, board: Board, runtime: Runtime, tracker: str | None = None,
           count: int = 1, secret: str | None = None, listen: str = LOOPBACK,
           custom_addr: str | None = None) -> list[BoardProcess]:
        """Start `count` servers for `board`, registered under its name with `tracker`
        (default: the tracker this farm started, starting one if needed), listening on `listen`
        and registered as `custom_addr` (see registered_address); with `secret` (default:
        $TINYASR_RPC_SECRET) they serve only clients that present it."""
        secret = os.environ.get(SECRET_ENV) if secret is None else secret
        with self._locked_state() as state:
            if tracker is None:
                if state.tracker is None:
                    state.tracker = self._start_tracker()
                tracker = state.tracker.address
            host, port = parse_address(tracker, "--tracker")
            custom_addr = registered_address(host, listen, custom_addr)
            check_tracker(host, port)
            started = [self._start_server(board, runtime, tracker, secret, listen, custom_addr)
                       for _ in range(count)]
            state.boards.extend(started)
        for process in started:
            wait_registered(host, port, board.name, process)
        return started

    def down(self, name: str | None = None) -> list[BoardProcess]:
        """Stop the boards called `name` (all when None); the tracker goes with the last board."""
        with self._locked_state() as state:
            stopped = [b for b in state.boards if name is None or b.name == name]
            for process in stopped:
                process.stop(SERVER_NAME)
                _secret_file(process.log).unlink(missing_ok=True)
            state.boards = [b for b in state.boards if b not in stopped]
            if not state.boards and state.tracker:
                state.tracker.stop("rpc_tracker")
                state.tracker = None
        return stopped

    def _start_tracker(self) -> TrackerProcess:
        port = free_port()
        log = self.state_dir / f"tracker-{port}.log"
        process = _spawn([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", LOOPBACK,
                          "--port", str(port), "--port-end", str(port + 1), "--silent"], log)
        address = f"{LOOPBACK}:{port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                check_tracker(LOOPBACK, port)
                return TrackerProcess(process.pid, str(log), address)
            except InputError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise InputError(f"the tracker did not start; see {log}") from None
                time.sleep(0.2)

    def _start_server(self, board: Board, runtime: Runtime, tracker: str,
                      secret: str | None, listen: str, custom_addr: str | None) -> BoardProcess:
        port = free_port()
        log = self.state_dir / f"{board.name}-{port}.log"
        work_dir = self.state_dir / "work"
        work_dir.mkdir(exist_ok=True)
        command = [str(runtime.server), "--host", listen, "--port", str(port),
                   "--port-end", str(port + 1), "--tracker", tracker, "--key", board.name,
                   *(["--custom-addr", custom_addr] if custom_addr else []),
                   "--work-dir", str(work_dir)]
        if secret:
            command += ["--secret-file", str(_write_secret(_secret_file(log), secret))]
        process = _spawn(emulator_prefix(board) + command, log)
        return BoardProcess(process.pid, str(log), board.name, port, tracker)


def _secret_file(log: str | Path) -> Path:
    """Where the secret of the server that logs to `log` is kept."""
    return Path(log).with_suffix(".secret")


def _write_secret(path: Path, secret: str) -> Path:
    """Write `secret` to a file readable by us only (created so, never world-readable)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return path


def emulator_prefix(board: Board) -> list[str]:
    """How to run a program built for `board` on this machine: nothing, or qemu-user."""
    if board.is_host:
        return []
    qemu, sysroot = board.qemu_binary, board.sysroot
    assert qemu is not None and sysroot is not None, f"{board.name}: emulated without a sysroot"
    return [qemu, "-L", sysroot, *board.qemu_cpu]


def _spawn(command: list[str], log: Path) -> subprocess.Popen:
    """Start a detached process (its own session: killable as a group, survives our exit)."""
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine's loopback (127.0.0.1, ::1)."""
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback
                               for address in found)


def registered_address(tracker_host: str, listen: str, custom_addr: str | None) -> str | None:
    """The address boards register with the tracker at `tracker_host` (None: the one the
    tracker sees them connect from). Loopback serves a loopback tracker's clients only, so it
    is the default only there; a tracker elsewhere needs boards listening on the network."""
    if custom_addr is not None:
        return custom_addr
    if is_loopback(tracker_host):
        return LOOPBACK
    if is_loopback(listen):
        raise InputError(f"--tracker {tracker_host} is another machine, whose clients cannot "
                         f"reach boards listening on {listen}: give --host 0.0.0.0 (or an "
                         "address of this machine), and --custom-addr ADDR if the tracker's "
                         "clients reach this machine at another address")
    return None


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"{what}: expected HOST:PORT, got {text!r}")
    return host, int(port)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def check_tracker(host: str, port: int, timeout: float = 5.0) -> None:
    """A one-line error unless a TVM tracker answers at host:port within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("<i", TRACKER_MAGIC))
            reply = sock.recv(4)
    except OSError as error:
        raise InputError(f"tracker {host}:{port} unreachable: {error}") from None
    if len(reply) != 4 or struct.unpack("<i", reply)[0] != TRACKER_MAGIC:
        raise InputError(f"{host}:{port} is not a TVM RPC tracker")


def registered_ports(host: str, port: int, key: str) -> list[int]:
    """Ports of the servers registered under `key` with the tracker at host:port."""
    from tvm import rpc

    summary = rpc.connect_tracker(host, port).summary()
    return [int(s["addr"][1]) for s in summary["server_info"] if s["key"] == f"server:{key}"]


def wait_for_boards(host: str, port: int, key: str, seconds: float) -> list[int]:
    """Ports of the boards registered under `key`, waiting up to `seconds` for the first; one
    line if none comes (a key nobody serves would otherwise wait forever)."""
    deadline = time.monotonic() + seconds
    while not (ports := registered_ports(host, port, key)):
        if time.monotonic() > deadline:
            raise InputError(f"no board of key {key!r} registered with the tracker at "
                             f"{host}:{port} within {seconds:g} s")
        time.sleep(0.5)
    return ports


def wait_registered(host: str, port: int, key: str, process: BoardProcess) -> None:
    """Block until the server is registered with the tracker, or fail naming its log."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while process.port not in registered_ports(host, port, key):
        if not process.alive(SERVER_NAME) or time.monotonic() > deadline:
            process.stop(SERVER_NAME)
            log_tail = Path(process.log).read_text(errors="replace").strip().splitlines()[-1:]
            raise InputError(f"board {key!r} did not register with the tracker "
                             f"({'; '.join(log_tail) or 'no output'}); see {process.log}")
        time.sleep(0.2)
