"""How tuning builds and measures candidates: on this machine, or on a board through a tracker;
and how it runs a built candidate once on given inputs, to check what it computes.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms

from tinyasr.model.common.errors import InputError
from tinyasr.targets.boards import Board
from tinyasr.targets.farm import check_tracker, parse_address, wait_for_boards

BUILD_TIMEOUT_SEC = 120.0     # generous: the 2-core machine is shared
SESSION_TIMEOUT_SEC = 120     # one candidate on an emulated board takes seconds, not 10 s
BOARD_WAIT_SEC = 30.0         # for a first board of the key to register with the tracker
CHECK_TIMEOUT_SEC = 120.0     # one candidate run once on this machine


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


# A built candidate's library run once: its arguments after one call of its `main` on copies of
# the given arrays (the outputs written, the inputs as they were), or why it did not run.
RunOutcome = list[np.ndarray] | str
RunOnce = Callable[[Sequence[str], Sequence[np.ndarray]], list[RunOutcome]]


@dataclass(frozen=True)
class Measurement:
    """Where candidates are built and timed (MetaSchedule's builder and runner) and run once."""

    # `derived_object` classes, which TVM's decorator makes subclasses of Builder and Runner
    # at run time; type checkers see no relation
    builder: ms.builder.Builder
    runner: ms.runner.Runner
    run_once: RunOnce


def call_main(module: tvm_ffi.Module, arrays: Sequence[np.ndarray], device) -> list[np.ndarray]:
    """`module`'s main called once on copies of `arrays` placed on `device`; the arguments after."""
    arguments = [tvm.runtime.tensor(array, device) for array in arrays]
    module["main"](*arguments)
    return [argument.numpy() for argument in arguments]


def _run_here(library: str, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    return call_main(tvm.runtime.load_module(library), arrays, tvm.cpu())


class RunHere:
    """run_once on this machine: each library run in a worker process, as the timing runs are
    (a candidate that crashes takes the worker, which restarts, not the tuner). One worker
    serves every call: starting one (importing TVM) takes about 2 s, once per tune, not once
    per kernel."""

    def __init__(self) -> None:
        self.worker = None   # a tvm.support.popen_pool.PopenWorker, started on first use

    def __call__(self, libraries: Sequence[str], arrays: Sequence[np.ndarray]
                 ) -> list[RunOutcome]:
        from tvm.support.popen_pool import PopenWorker

        self.worker = self.worker or PopenWorker()
        results = list[RunOutcome]()
        for library in libraries:
            self.worker.send(_run_here, (library, list(arrays)), timeout=CHECK_TIMEOUT_SEC)
            try:
                results.append(self.worker.recv())
            except ChildProcessError:
                results.append("crashed")
            except TimeoutError:
                results.append(f"ran over {CHECK_TIMEOUT_SEC:g} s")
            except Exception as error:  # noqa: BLE001  # the candidate's own error, as a record
                results.append(last_line(str(error)) or type(error).__name__)
        return results


def run_on_board(tracker: str, key: str, libraries: Sequence[str], arrays: Sequence[np.ndarray]
                 ) -> list[RunOutcome]:
    """Each library uploaded under a name of its own (a board's loader keeps a loaded path) and
    run once in one session on a board of `key`; with no board free, each is that error (as
    a failed timing is: tuning goes on)."""
    from tinyasr.targets.remote import request_session

    try:
        remote = request_session(tracker, key, wait=BOARD_WAIT_SEC)
    except InputError as error:
        return [str(error)] * len(libraries)
    results = list[RunOutcome]()
    for number, library in enumerate(libraries):
        name = f"checked-{number}-{os.path.basename(library)}"
        try:
            remote.upload(library, target=name)
            results.append(call_main(remote.load_module(name), arrays, remote.cpu()))
        except Exception as error:  # noqa: BLE001  # TVM's RPC errors carry the board's text
            results.append(last_line(str(error)) or type(error).__name__)
    return results


def last_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[-1] if lines else message


def local_measurement() -> Measurement:
    """Build, time and run candidates on this machine."""
    builder = ms.builder.LocalBuilder(timeout_sec=BUILD_TIMEOUT_SEC, f_build=build_candidate)
    return Measurement(builder, ms.runner.LocalRunner(),  # pyright: ignore[reportArgumentType]
                       RunHere())


def board_measurement(board: Board, tracker: str, key: str | None) -> Measurement:
    """Cross-link candidates here, time and run them on a board of `key` (default: the board's
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
    return Measurement(builder, runner,  # pyright: ignore[reportArgumentType]  # derived_object
                       functools.partial(run_on_board, tracker, key or board.name))
