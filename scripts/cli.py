"""The `tinyasr` command line.

Each subcommand lives in its own module under `tinyasr.scripts.commands` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a handler taking the parsed
arguments. `InputError` becomes one line on stderr and exit code 2; nothing else is caught.
Every command takes -q (no progress) and -v (more detail), after its name or before it
(`tinyasr -q compile ...`): progress goes to stderr, results to stdout. The parser is built on
every start, so command modules import heavy modules (torch, TVM, numpy) only in their handlers.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
        return args.func(args) or 0
    except InputError as error:
        print(f"tinyasr: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyasr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
