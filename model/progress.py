"""Progress and detail lines of the command line, on stderr: stdout holds a command's results.

`-q` silences progress (these lines and tqdm's bars), `-v` adds detail lines. The level lives in
the environment (TINYASR_VERBOSITY: -1, 0, 1), so worker and rank processes started by a command
follow it too.
"""

from __future__ import annotations

import os
import sys

ENV = "TINYASR_VERBOSITY"


def set_verbosity(level: int) -> None:
    """-1 quiet, 0 normal, 1 or more verbose, for this process and those it starts."""
    os.environ[ENV] = str(level)
    if level < 0:
        os.environ["TQDM_DISABLE"] = "1"   # tqdm reads its defaults from TQDM_* variables


def verbosity() -> int:
    try:
        return int(os.environ.get(ENV, "0"))
    except ValueError:
        return 0


def progress(message: str) -> None:
    """A status line (what is being done), unless -q."""
    if verbosity() >= 0:
        print(message, file=sys.stderr, flush=True)


def detail(message: str) -> None:
    """A line only -v asks for (timings, choices made)."""
    if verbosity() > 0:
        print(message, file=sys.stderr, flush=True)
