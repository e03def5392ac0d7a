"""Command-line arguments that several `tinyasr` commands share, declared once."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.errors import InputError
from tinyasr.model.model_dir import DEFAULT_MODEL
from tinyasr.model.recognizer import DecodeMode, DecodeOptions
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
    parser.add_argument("--beam", type=int, default=defaults.beam)


def add_target_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--target", required=True, metavar="NAME",
                        help=f"board name: {', '.join(BOARDS)}{note}")


def check_distill_weight(weight: float | None) -> None:
    """--distill-weight: the share of a loss that is the KL to a teacher, in [0, 1]."""
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise InputError(f"--distill-weight: must be in [0, 1], got {weight}")
