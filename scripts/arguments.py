"""Command-line arguments that several `tinyasr` commands share, declared once.

This module and every command module import only light modules at their top (no torch, no
TVM, no numpy): the whole parser is built on each start, `--help` included. Heavy imports go
in the commands' `run` functions.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL
from tinyasr.targets.boards import BOARDS


def add_model_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("model", type=Path, nargs="?", default=DEFAULT_MODEL, metavar="MODEL",
                        help="model directory or compressed .tac file (default: the shipped "
                             f"model){note}")


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """--mode and --beam, with the defaults of DecodeOptions."""
    defaults = DecodeOptions()
    parser.add_argument("--mode", choices=[m.value for m in DecodeMode],
                        default=defaults.mode.value)
    parser.add_argument("--beam", type=positive_int, default=defaults.beam,
                        help=f"CTC prefix beam width (default {defaults.beam})")


def positive_int(text: str) -> int:
    """argparse type for a count that must be at least 1 (argparse prints its own one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def check_output_path(path: Path | None, option: str) -> None:
    """An output file the command writes at its end, checked before any work is done: not a
    directory, and its directory exists or can be made (atomic_file makes it)."""
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{option} {path}: is a directory; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{option} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {parent} is not writable")


def add_target_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--target", required=True, metavar="NAME",
                        help=f"board name: {', '.join(BOARDS)}{note}")


def check_distill_weight(weight: float | None) -> None:
    """--distill-weight: the share of a loss that is the KL to a teacher, in [0, 1]."""
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise InputError(f"--distill-weight: must be in [0, 1], got {weight}")
