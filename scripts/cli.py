"""The `tinyasr` command line.

Each subcommand lives in its own module under `tinyasr.scripts.commands` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a handler taking the parsed
arguments. `InputError` becomes one line on stderr and exit code 2; nothing else is caught.
Every command takes -q (no progress) and -v (more detail), after its name or before it
(`tinyasr -q compile ...`): progress goes to stderr, results to stdout. The parser is built on
every start, so command modules import heavy modules (torch, TVM, numpy) only in their handlers.
The `tinyasr` program (`run`) ends its process without tearing down the modules (`exit_now`).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading

from tinyasr.model.common.errors import InputError
from tinyasr.model.common.progress import set_verbosity

COMMAND_MODULES = [
    "data",
    "train",
    "transcribe",
    "evaluate",
    "demo",
    "compile",
    "export",
    "compress",
    "report",
    "board",
    "rpc_test",
    "tune",
    "bench",
    "footprint",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyasr",
                                     description=(__doc__ or "tinyasr").splitlines()[0])
    parser.add_argument("--version", action=VersionAction)
    # the same switches before the command, under their own names: a subcommand's defaults
    # would otherwise overwrite what was given before it
    add_verbosity_arguments(parser, "_before")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"tinyasr.scripts.commands.{name}").register(subparsers)
    for command in leaf_parsers(parser):
        add_verbosity_arguments(command)
    return parser


class VersionAction(argparse.Action):
    """--version: the installed distribution's version, looked up only when asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import version

        print(f"tinyasr {version('tinyasr')}")
        parser.exit()


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of the commands that run (`transcribe`, `data synth`, ...), below `parser`."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    return [leaf for group in groups for child in dict.fromkeys(group.choices.values())
            for leaf in leaf_parsers(child)]


def add_verbosity_arguments(parser: argparse.ArgumentParser, suffix: str = "") -> None:
    group = parser.add_argument_group("output").add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", dest=f"quiet{suffix}",
                       help="no progress on stderr (results and errors still shown)")
    group.add_argument("-v", "--verbose", action="count", default=0, dest=f"verbose{suffix}",
                       help="more detail on stderr (timings, steps)")


def verbosity_level(args: argparse.Namespace) -> int:
    """-1 quiet, 0 normal, N verbose, from the switches given before and after the command."""
    quiet, verbose = args.quiet or args.quiet_before, args.verbose + args.verbose_before
    if quiet and verbose:
        raise InputError("-q and -v: give one of them")
    return -1 if quiet else verbose


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The process's own command line (not a call from Python): a command may then set up the
    # process for itself alone (transcribe --lib loads TVM's runtime without torch).
    args.owns_process = argv is None
    args.argv = list(argv) if argv is not None else sys.argv[1:]   # for the ranks it starts
    try:
        set_verbosity(verbosity_level(args))
        code = args.func(args) or 0
    except InputError as error:
        print(f"tinyasr: error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("tinyasr: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:   # the reader of stdout went away (`| head`): stop, as if by SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 128 + 13
    return code


def run() -> None:
    """The `tinyasr` program: `main` on the process's command line, then `exit_now`."""
    exit_now(main())


def exit_now(code: int) -> None:
    """End the process with `code` once the exit handlers have run and stdout and stderr are
    flushed, without the interpreter's teardown of every module: with torch imported that
    teardown alone took 0.3-0.4 s after the work was done (`python -c "import torch"`, on
    a 2-core AMD EPYC). While threads other than daemons run, exits the normal way, which
    waits for them."""
    if any(not thread.daemon for thread in threading.enumerate()
           if thread is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
