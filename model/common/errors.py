"""The one exception type for bad user input, and the one way to warn about it.

Anything raised as `InputError` is printed by the CLI as a single line (`tinyasr: error: ...`)
with no traceback, so its message must name the file, line or argument at fault. `warn` prints
`tinyasr: warning: ...` for input that is used anyway, in a weaker way than asked.
"""

import sys


class InputError(Exception):
    """Bad input from the user: a file, a line in it, or a command-line argument."""


def warn(message: str) -> None:
    """One line on stderr about input that is used, but not as well as it could be."""
    print(f"tinyasr: warning: {message}", file=sys.stderr)


def first_line(error: BaseException, limit: int = 200) -> str:
    """A library's exception as a short reason for an InputError: its first non-empty line
    (torch's load errors run to pages), at most `limit` characters, else its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(error).__name__
