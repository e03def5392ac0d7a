"""Progress and detail lines of the command line, on stderr: stdout holds a command's results.

`-q` silences progress (these lines and tqdm's bars), `-v` adds detail lines. The level lives in
the environment (TINYASR_VERBOSITY: -1, 0, 1), so worker and rank processes started by a command
follow it too.
"""

from __future__ import annotations

import os
import sys

ENV = "TINYASR_VERBOSITY"
_QUIET_TQDM = "TQDM_DISABLE"   # tqdm reads its defaults from TQDM_* variables
_set_by_us: list[str] = []     # environment variables set by -q, undone by the next level set


def set_verbosity(level: int) -> None:
    """-1 quiet, 0 normal, 1 or more verbose, for this process and those it starts."""
    os.environ[ENV] = str(level)
    while _set_by_us:   # a later command in the same process (tests call main repeatedly)
        os.environ.pop(_set_by_us.pop(), None)
    if level < 0 and _QUIET_TQDM not in os.environ:
        os.environ[_QUIET_TQDM] = "1"
        _set_by_us.append(_QUIET_TQDM)


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
