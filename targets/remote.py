"""Sessions on boards behind a TVM tracker, with bounded waits and checked uploads.

TVM's own `connect_tracker(...).request(key)` waits forever for a free board and retries an
unreachable tracker for a minute; these helpers fail within a bound, with one-line errors.

A board whose `tinyasr-rpc-server` was started with `--secret-file FILE` serves only clients that
present the secret: TVM's handshake carries a key string the client chooses, and ours is the
tracker's match key followed by the word `-secret=SECRET` (`session_key`). `request_session` adds
it when given `secret`, or from the environment variable TINYASR_RPC_SECRET. The secret crosses
the network in clear text: it keeps out whoever can merely reach the board, not an eavesdropper.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.targets.boards import Board
from tinyasr.targets.farm import SECRET_ENV, TRACKER_MAGIC, check_tracker, parse_address

ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}


def session_key(match_key: str, secret: str | None) -> str:
    """The key a client presents to a board: `match_key`, plus ` -secret=SECRET` if any."""
    if not secret:
        return match_key
    if any(c.isspace() for c in secret) or not secret.isprintable():
        raise InputError(f"{SECRET_ENV}: the secret must be one word of printable characters")
    return f"{match_key} -secret={secret}"


def request_session(tracker: str, key: str, wait: float = 60.0, session_timeout: float = 0.0,
                    secret: str | None = None):
    """An RPC session on a free board of `key`; InputError if none is free within `wait` s.

    `session_timeout` (s, 0 = none) lets the board end a session that runs too long. `secret`
    (default: $TINYASR_RPC_SECRET) is presented to boards started with `--secret-file`.
    """
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
    return connect(url, board_port, match_key, session_timeout,
                   os.environ.get(SECRET_ENV) if secret is None else secret)


def connect(host: str, port: int, key: str, session_timeout: float = 0.0,
            secret: str | None = None):
    """`tvm.rpc.connect` with the secret in the key; a refusal is a one-line InputError that
    does not repeat the key (TVM's own message would show the secret)."""
    from tvm import rpc

    try:
        # TVM documents session_timeout as a float and annotates it int
        return rpc.connect(host, port, session_key(key, secret),
                           session_timeout)  # pyright: ignore[reportArgumentType]
    except Exception as error:  # TVM raises its own error classes with the key in the text
        if "cannot find server that matches key" in str(error):
            raise InputError(f"board {host}:{port} refused the session for key {key!r}: another "
                             f"client took it, or the board wants a secret "
                             f"({'a wrong one was given' if secret else f'set {SECRET_ENV}'})"
                             ) from None
        if secret:  # do not let the secret into tracebacks and logs
            last = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            raise InputError(f"board {host}:{port}: connecting failed: "
                             f"{last.replace(secret, '***')}") from None
        raise


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
