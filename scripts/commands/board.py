"""`tinyasr board`: build board runtimes and run emulated boards behind a TVM tracker."""

from __future__ import annotations

import argparse

from tinyasr.targets.boards import BOARDS, get_board


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("board", help="board runtimes and emulated boards")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    build = actions.add_parser("build-runtime", help="cross-build the TVM runtime and RPC server")
    build.add_argument("--target", required=True, help=f"board: {', '.join(BOARDS)}")
    build.set_defaults(func=_build_runtime)

    up = actions.add_parser("up", help="start emulated boards registered with a tracker")
    up.add_argument("name", help=f"board: {', '.join(BOARDS)}")
    up.add_argument("--tracker", metavar="HOST:PORT",
                    help="register with this tracker (default: start one on 127.0.0.1)")
    up.add_argument("--count", type=int, default=1, help="how many boards of this key")
    up.set_defaults(func=_up)

    ls = actions.add_parser("ls", help="list running emulated boards")
    ls.set_defaults(func=_ls)

    down = actions.add_parser("down", help="stop emulated boards (all, or those of NAME)")
    down.add_argument("name", nargs="?")
    down.set_defaults(func=_down)


def _build_runtime(args: argparse.Namespace) -> int:
    from tinyasr.targets.runtime_build import build_runtime, describe

    print(describe(build_runtime(get_board(args.target))))
    return 0


def _up(args: argparse.Namespace) -> int:
    from tinyasr.model.errors import InputError
    from tinyasr.targets.farm import Farm, check_tracker, parse_address
    from tinyasr.targets.runtime_build import build_runtime

    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    board = get_board(args.name)
    if args.tracker:  # before a possibly long runtime build
        check_tracker(*parse_address(args.tracker, "--tracker"))
    started = Farm().up(board, build_runtime(board), args.tracker, args.count)
    for process in started:
        print(f"{board.name}: pid {process.pid}, port {process.port}, tracker {process.tracker}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    from tinyasr.targets.farm import Farm

    farm = Farm()
    tracker = farm.tracker_address()
    if tracker:
        print(f"tracker {tracker} (started by tinyasr)")
    for process in farm.boards():
        print(f"{process.name:12s} pid {process.pid:7d}  port {process.port:5d}  "
              f"tracker {process.tracker}  log {process.log}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from tinyasr.targets.farm import Farm

    if args.name is not None:
        get_board(args.name)
    stopped = Farm().down(args.name)
    print(f"stopped {len(stopped)} board(s)")
    return 0
