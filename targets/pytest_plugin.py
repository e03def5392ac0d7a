"""pytest plugin: the `board` fixture gives a test a TVM RPC session on a named board.

    def test_add(board):
        remote = board("rpi4")          # an RPCSession on an (emulated) Raspberry Pi 4

By default the boards are emulated: the board runtime is built (or taken from the cache), the
server runs under qemu-user and registers with a tracker started for the test session; all of it
is stopped at the end. With `pytest --tracker HOST:PORT` the same tests request real boards
from that tracker instead. Registered through the `pytest11` entry point in pyproject.toml.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tinyasr.targets.boards import Board, get_board
from tinyasr.targets.farm import Farm
from tinyasr.targets.native_build import build_runtime
from tinyasr.targets.remote import request_session

REQUEST_WAIT = 120.0      # seconds to wait for a free board
SESSION_TIMEOUT = 300.0   # seconds a board lets one session run


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--tracker", metavar="HOST:PORT", default=None,
                     help="run board tests on the real boards behind this TVM RPC tracker")


class Boards:
    """Hands out sessions on named boards; emulated ones are started on first use."""

    def __init__(self, tracker: str | None, state_dir: Path):
        self.emulated = tracker is None
        self.farm = Farm(state_dir)
        self._tracker = tracker

    @property
    def tracker(self) -> str:
        """HOST:PORT of the tracker in use (the emulated farm's once a board is started)."""
        if self._tracker is None:
            self._tracker = self.farm.tracker_address()
        if self._tracker is None:
            raise RuntimeError("no tracker: no emulated board has been started yet")
        return self._tracker

    def start(self, board: Board) -> None:
        """Make sure an emulated `board` is registered (no-op against a real farm)."""
        if self.emulated and not any(p.name == board.name for p in self.farm.boards()):
            self.farm.up(board, build_runtime(board))
            self._tracker = self.farm.tracker_address()

    def __call__(self, name: str, session_timeout: float = SESSION_TIMEOUT):
        board = get_board(name)
        self.start(board)
        return request_session(self.tracker, name, REQUEST_WAIT, session_timeout)


@pytest.fixture(scope="session")
def board_farm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The boards of the whole test session, stopped at its end."""
    boards = Boards(request.config.getoption("--tracker"), tmp_path_factory.mktemp("boards"))
    yield boards
    boards.farm.down()


@pytest.fixture
def board(board_farm: Boards):
    """The session's boards, for one test. A board serves one session at a time, and an RPC
    session closes only when its last reference goes: a test's frame can outlive the test in
    a reference cycle (TVMScript's parser keeps the frames it was called from), holding its
    session open until Python collects cycles, so the next test would find the board busy.
    Collecting after each test closes what the test left."""
    yield board_farm
    gc.collect()
