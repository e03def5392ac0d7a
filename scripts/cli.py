"""The `tinyasr` command line.

Each subcommand lives in its own module under `tinyasr.scripts.commands` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a handler taking the parsed
arguments. `InputError` becomes one line on stderr and exit code 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tinyasr.model.errors import InputError

COMMAND_MODULES = [
    "data",
    "train",
    "transcribe",
    "evaluate",
    "demo",
    "compile",
    "compress",
    "report",
    "board",
    "rpc_test",
    "tune",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyasr", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"tinyasr.scripts.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except InputError as error:
        print(f"tinyasr: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyasr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
