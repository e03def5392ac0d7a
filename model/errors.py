"""The one exception type for bad user input.

Anything raised as `InputError` is printed by the CLI as a single line (`tinyasr: error: ...`)
with no traceback, so its message must name the file, line or argument at fault.
"""


class InputError(Exception):
    """Bad input from the user: a file, a line in it, or a command-line argument."""
