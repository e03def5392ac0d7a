"""How tuning builds and measures candidates: on this machine, or on a board through a tracker.

Building skips a 35-CPU-second import per batch: TVM's default build function imports
`tvm.s_tir.tensor_intrin` (every tensor intrinsic of every target, parsed from TVMScript; over
60 s on this loaded 2-core machine) inside each worker, and LocalBuilder starts fresh workers
for every batch, so with the default timeout every build timed out. Candidates arrive already
scheduled (a tensorized block carries its intrinsic's body), so building needs none of it.

For a board, candidates are cross-linked here into shared libraries with the board's g++ (the
default export makes a .tar for the board to link, and boards have no compiler), then TVM's
RPCRunner uploads each to a board of the key behind the tracker and times it there.
"""

from __future__ import annotations

import functools
import os
import tempfile

import tvm
from tvm.s_tir import meta_schedule as ms

from tinyasr.targets.boards import Board
from tinyasr.targets.farm import check_tracker, parse_address, wait_for_boards

BUILD_TIMEOUT_SEC = 120.0     # generous: the 2-core machine is shared
SESSION_TIMEOUT_SEC = 120     # one candidate on an emulated board takes seconds, not 10 s
BOARD_WAIT_SEC = 30.0         # for a first board of the key to register with the tracker


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params) -> tvm.runtime.Module:
    """What MetaSchedule's default_build does, minus the tensor intrinsic import."""
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def export_for_board(compiler: str, flags: list[str], mod: tvm.runtime.Module) -> str:
    """A candidate linked into a shared library for the board; its path."""
    from tvm.support import cc

    path = os.path.join(tempfile.mkdtemp(prefix="tinyasr-candidate-"), "candidate.so")
    mod.export_library(path, fcompile=cc.cross_compiler(compiler, options=flags))
    return path


# The builders and runners are `derived_object` classes, which TVM's decorator makes
# subclasses of Builder and Runner at run time; type checkers see no relation.
Measurement = tuple[ms.builder.Builder, ms.runner.Runner]


def local_measurement() -> Measurement:
    """Build and time candidates on this machine."""
    return (ms.builder.LocalBuilder(  # pyright: ignore[reportReturnType]  # derived_object
        timeout_sec=BUILD_TIMEOUT_SEC, f_build=build_candidate), ms.runner.LocalRunner())


def board_measurement(board: Board, tracker: str, key: str | None) -> Measurement:
    """Cross-link candidates here and time them on a board of `key` (default: the board's
    name) behind `tracker`; InputError now if the tracker cannot be reached."""
    host, port = parse_address(tracker, "--tracker")
    check_tracker(host, port)
    wait_for_boards(host, port, key or board.name, BOARD_WAIT_SEC)  # MetaSchedule would hang
    export = functools.partial(export_for_board, board.require_cross_compiler(),
                               board.link_flags)
    builder = ms.builder.LocalBuilder(timeout_sec=BUILD_TIMEOUT_SEC, f_build=build_candidate,
                                      f_export=export)
    runner = ms.runner.RPCRunner(ms.runner.RPCConfig(
        tracker_host=host, tracker_port=port, tracker_key=key or board.name,
        session_timeout_sec=SESSION_TIMEOUT_SEC))
    return builder, runner  # pyright: ignore[reportReturnType]  # derived_object
