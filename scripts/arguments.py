"""Command-line arguments that several `tinyasr` commands share, declared once.

This module and every command module import only light modules at their top (no torch, no
TVM, no numpy): the whole parser is built on each start, `--help` included. Heavy imports go
in the commands' `run` functions.
"""

from __future__ import annotations

import argparse
import math
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
    parser.add_argument("--beam", type=beam_width, default=defaults.beam,
                        help=f"CTC prefix beam width, 1..{MAX_BEAM} (default {defaults.beam})")


MAX_BEAM = 100   # each hypothesis is extended by every token per frame: a wider beam crawls


def beam_width(text: str) -> int:
    """argparse type for --beam: 1..MAX_BEAM."""
    value = positive_int(text)
    if value > MAX_BEAM:
        raise argparse.ArgumentTypeError(f"at most {MAX_BEAM}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type for a count that must be at least 1 (argparse prints its own one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_number(text: str) -> float:
    """argparse type for a finite number above 0 (seconds, rates, sizes)."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_number(text: str) -> float:
    """argparse type for a finite number of at least 0 (a tolerance, a rate that may be 0)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def tracker_address(text: str) -> str:
    """argparse type for HOST:PORT (a TVM tracker), the port in 1..65535; the text itself."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 1..65535")
    return text


def check_output_dir(path: Path, option: str) -> None:
    """An output directory the command makes or fills, checked before any work is done: not a
    file, and under a directory that exists or can be made."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: not a directory")
    check_output_path(path if not path.exists() else path / "x", option)


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
