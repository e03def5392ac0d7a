"""`tinyasr board`: build board runtimes, run emulated boards behind a TVM tracker, and run the
board's own transcriber (`tinyasr-run`) under emulation."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.scripts.arguments import add_decode_arguments, tracker_address
from tinyasr.targets.boards import BOARDS, check_features, get_board


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("board", help="board runtimes and emulated boards")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    build = actions.add_parser("build-runtime", help="cross-build the TVM runtime and RPC server")
    build.add_argument("--target", required=True, help=f"board: {', '.join(BOARDS)}")
    build.set_defaults(func=_build_runtime)

    up = actions.add_parser("up", help="start emulated boards registered with a tracker")
    up.add_argument("name", help=f"board: {', '.join(BOARDS)}")
    up.add_argument("--tracker", metavar="HOST:PORT", type=tracker_address,
                    help="register with this tracker (default: start one on 127.0.0.1)")
    up.add_argument("--count", type=int, default=1, help="how many boards of this key")
    up.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                    help="address the boards listen on (default 127.0.0.1; a tracker on "
                         "another machine needs one its clients reach, e.g. 0.0.0.0)")
    up.add_argument("--custom-addr", metavar="ADDR",
                    help="address the tracker hands its clients for these boards (default: "
                         "127.0.0.1 with a loopback tracker, else the address it sees)")
    up.set_defaults(func=_up)

    run = actions.add_parser("run", help="transcribe wav files with tinyasr-run on an emulated "
                                         "board (no Python on the board)")
    run.add_argument("name", help=f"board: {', '.join(BOARDS)}")
    run.add_argument("deployable", type=Path, help="from `tinyasr compile --target NAME`")
    run.add_argument("wavs", type=Path, nargs="+", metavar="WAV")
    run.add_argument("--static", action="store_true",
                     help="run tinyasr-run-static, the transcriber with the runtime linked in "
                          "(one file instead of tinyasr-run and its two libraries)")
    add_decode_arguments(run)
    run.set_defaults(func=_run)

    ls = actions.add_parser("ls", help="list running emulated boards")
    ls.set_defaults(func=_ls)

    targets = actions.add_parser("targets", help="what each target compiles for: its LLVM cpu "
                                                 "and extensions, kernels, tuning database")
    targets.set_defaults(func=_targets)

    down = actions.add_parser("down", help="stop emulated boards (all, or those of NAME)")
    down.add_argument("name", nargs="?")
    down.set_defaults(func=_down)


def _build_runtime(args: argparse.Namespace) -> int:
    from tinyasr.model.common.progress import progress
    from tinyasr.targets.native_build import build_runtime, describe

    # the build's steps are progress (stderr, -q); the runtime's description is the result
    print(describe(build_runtime(get_board(args.target), log=progress)))
    return 0


def _up(args: argparse.Namespace) -> int:
    import os
    import sys

    from tinyasr.model.common.errors import InputError
    from tinyasr.targets.farm import (
        SECRET_ENV,
        Farm,
        check_tracker,
        is_loopback,
        parse_address,
        registered_address,
    )
    from tinyasr.targets.native_build import build_runtime

    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    board = get_board(args.name)
    if args.tracker:  # before a possibly long runtime build
        tracker_host, tracker_port = parse_address(args.tracker, "--tracker")
        registered_address(tracker_host, args.host, args.custom_addr)
        check_tracker(tracker_host, tracker_port)
    started = Farm().up(board, build_runtime(board), args.tracker, args.count,
                        listen=args.host, custom_addr=args.custom_addr)
    if not is_loopback(args.host) and not os.environ.get(SECRET_ENV):
        print(f"warning: the boards listen on {args.host}: anyone who reaches them can run code "
              f"there; set {SECRET_ENV} (or keep them on a trusted network)", file=sys.stderr)
    for process in started:
        print(f"{board.name}: pid {process.pid}, port {process.port}, tracker {process.tracker}")
    return 0


def _run(args: argparse.Namespace) -> int:
    """The transcripts on stdout, timings on stderr, tinyasr-run's exit code. tinyasr-run picks
    its code path by the manifest's model family; Whisper decodes greedily (no --mode, --beam)."""
    import subprocess

    from tinyasr.compile.family import WHISPER, deployable_family
    from tinyasr.model.common.errors import InputError
    from tinyasr.model.common.progress import progress
    from tinyasr.model.data.datadir import check_wav
    from tinyasr.targets.farm import emulator_prefix
    from tinyasr.targets.native_build import build_runtime

    board = get_board(args.name)
    decoding = ["--mode", args.mode, "--beam", str(args.beam)]
    # the manifest is checked before a possibly long runtime build
    if deployable_family(args.deployable) == WHISPER:
        from tinyasr.compile.whisper_manifest import read_whisper_manifest

        manifest = read_whisper_manifest(args.deployable)
        if _decoding_given(args):
            raise InputError(f"{args.deployable}: a Whisper deployable decodes greedily; "
                             "--mode and --beam are for SAN-M deployables")
        decoding = []
    else:
        from tinyasr.compile.deployable import read_manifest

        manifest = read_manifest(args.deployable)
    if manifest["arch"] != board.arch:
        raise InputError(f"{args.deployable}: built for {manifest['target']} ({manifest['arch']}), "
                         f"not for {board.name} ({board.arch})")
    check_features(args.deployable, manifest, board)
    for wav in args.wavs:   # as tinyasr-run reads them, but before the runtime build
        check_wav(wav)
    runtime = build_runtime(board, log=progress)   # stderr, silenced by -q; stdout: the text
    transcriber = runtime.static_transcriber if args.static else runtime.transcriber
    command = [*emulator_prefix(board), str(transcriber), *decoding,
               str(args.deployable), *map(str, args.wavs)]
    return subprocess.run(command).returncode


def _decoding_given(args: argparse.Namespace) -> bool:
    """Whether --mode or --beam differ from their defaults (argparse cannot tell whether they
    were typed)."""
    from tinyasr.model.decoding.options import DecodeOptions

    defaults = DecodeOptions()
    return args.mode != defaults.mode.value or args.beam != defaults.beam


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


def _targets(args: argparse.Namespace) -> int:
    """Per target: its LLVM cpu and added extensions (for `host`, what this machine resolves
    to), the int8 and fp32 kernels' instruction set, and the tuning database compile applies."""
    from tvm.target import Target

    from tinyasr.compile.kernels.fp32 import vector_unit
    from tinyasr.compile.kernels.int8 import dot_isa
    from tinyasr.compile.kernels.int8_amx import has_amx
    from tinyasr.compile.schedule_database import KERNEL_FILE, RECORD_FILE, default_database_dir
    from tinyasr.targets.boards import board_target

    for board in BOARDS.values():
        target = board_target(board)
        llvm = Target(target)
        unit, isa = vector_unit(llvm), dot_isa(llvm)
        tiles = ", AMX tiles where tuned" if has_amx(llvm) else ""
        database = default_database_dir(board.name, target)
        records = database / RECORD_FILE
        if records.exists():
            kernels = database / KERNEL_FILE
            timings = len(kernels.read_text().splitlines()) if kernels.exists() else 0
            tuned = (f"{database} ({len(records.read_text().splitlines())} schedule records, "
                     f"{timings} kernel timings)")
        else:
            tuned = f"none at {database} (compile builds untuned)"
        print(f"{board.name:12s} {board.description}")
        print(f"{'':12s} llvm {' '.join([target.get('mcpu', 'generic'), *target.get('mattr', [])])}"
              f"; int8 kernels {isa.name}{tiles}; fp32 vectors {unit.lanes} lanes x "
              f"{unit.registers}")
        print(f"{'':12s} tuning database {tuned}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from tinyasr.targets.farm import Farm

    if args.name is not None:
        get_board(args.name)
    stopped = Farm().down(args.name)
    print(f"stopped {len(stopped)} board(s)")
    return 0
