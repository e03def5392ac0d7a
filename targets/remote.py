"""Sessions on boards behind a TVM tracker, with bounded waits and checked uploads.

TVM's own `connect_tracker(...).request(key)` waits forever for a free board and retries an
unreachable tracker for a minute; these helpers fail within a bound, with one-line errors.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from tinyasr.model.errors import InputError
from tinyasr.targets.boards import Board
from tinyasr.targets.farm import TRACKER_MAGIC, check_tracker, parse_address

ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}


def request_session(tracker: str, key: str, wait: float = 60.0, session_timeout: float = 0.0):
    """An RPC session on a free board of `key`; InputError if none is free within `wait` s.

    `session_timeout` (s, 0 = none) lets the board end a session that runs too long.
    """
    from tvm import rpc
    from tvm.rpc.base import TrackerCode, recvjson, sendjson

    host, port = parse_address(tracker, "--tracker")
    check_tracker(host, port)
    try:
        with socket.create_connection((host, port), timeout=wait) as sock:
            sock.sendall(struct.pack("<i", TRACKER_MAGIC))
            sock.recv(4)
            sendjson(sock, [TrackerCode.REQUEST, key, "", 1])
            code, (url, board_port, match_key) = recvjson(sock)
    except TimeoutError:
        raise InputError(f"no free board with key {key!r} at tracker {tracker} "
                         f"within {wait:g} s") from None
    except OSError as error:
        raise InputError(f"tracker {tracker} failed while requesting {key!r}: {error}") from None
    if code != TrackerCode.SUCCESS:
        raise InputError(f"tracker {tracker} refused a request for {key!r}")
    return rpc.connect(url, board_port, match_key, session_timeout)


def elf_arch(path: Path) -> str:
    """The machine a shared library is built for, read from its ELF header."""
    header = Path(path).read_bytes()[:20]
    if header[:4] != b"\x7fELF" or len(header) < 20:
        raise InputError(f"{path}: not an ELF shared library")
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"ELF machine {machine}")


def check_library_for(path: Path, board: Board) -> None:
    """A one-line error naming both architectures unless `path` can run on `board`."""
    arch = elf_arch(path)
    if arch != board.arch:
        raise InputError(f"{path}: library is built for {arch}, but board {board.name!r} "
                         f"is {board.arch}")


def load_library(remote, path: Path, board: Board):
    """Upload a library after checking its architecture; the loaded remote module."""
    check_library_for(path, board)
    remote.upload(str(path))
    return remote.load_module(Path(path).name)
