"""Writing files so that a reader, or a kill -9, never sees one half-written.

Data goes to a temp file beside the destination, is flushed to disk, then renamed over it
(rename is atomic on POSIX): the destination holds either the old content or the new.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tinyasr.model.errors import InputError


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """`path` opened for writing through a temp file beside it; its directory is made if
    missing. A path that is a directory (or under a file) is an InputError naming it."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{path}: {path.parent} is not a directory") from None
    except OSError as error:
        raise InputError(f"{path}: cannot create {path.parent} ({error.strerror})") from None
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(text)
