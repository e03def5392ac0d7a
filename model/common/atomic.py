"""Writing files so that a reader, or a kill -9, never sees one half-written.

Data goes to a temp file beside the destination, is flushed to disk, then renamed over it
(rename is atomic on POSIX): the destination holds either the old content or the new.

A directory (a model dir, a deployable) is built in a staging dir beside it, then swapped in:
the old one is renamed aside, the new one renamed in, and only then is the old one deleted, so
at every instant either the old directory or the new one is complete at its name, or (between
the two renames) the old one is complete beside it. Temp names carry the writer's pid; the next
writer of the same path removes the leftovers of writers that are no longer running (and puts an
old directory back when a kill came between the renames). Readers only ever open the real name.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tinyasr.model.common.errors import InputError


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
    remove_stale_temp_files(path)
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


def _running(pid: int) -> bool:
    """Whether a process `pid` exists (a temp name's writer that may still be writing)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, someone else's
        return True
    return True


def remove_stale_temp_files(path: Path) -> None:
    """Deletes `atomic_file`'s temp files for `path` left by writers that were killed."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.tmp")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not _running(int(match.group(1))):
            entry.unlink(missing_ok=True)


def _leftovers(path: Path) -> list[tuple[str, Path]]:
    """(kind, dir) of staging ("tmp") and set-aside ("old") dirs for `path` whose writer is gone."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(tmp|old)-(\d+)-.*")
    try:
        entries = sorted(path.parent.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not _running(int(match.group(2))):
            found.append((match.group(1), entry))
    return found


def clean_directory_leftovers(path: Path) -> None:
    """Undoes what a killed `staged_directory` writer of `path` left: its staging dir is
    deleted (it may be half-written and is never read), and its set-aside old directory is put
    back when `path` is missing (the kill came between the two renames), else deleted."""
    path = Path(path)
    for kind, entry in _leftovers(path):
        if kind == "old" and not path.exists():
            os.replace(entry, path)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def replace_directory(staging: Path, path: Path) -> None:
    """Puts the complete directory `staging` at `path`, replacing whatever is there: old
    aside, new in, old deleted (see the module docstring)."""
    staging, path = Path(staging), Path(path)
    if path.is_dir() and not path.is_symlink():
        old = path.with_name(f".{path.name}.old-" + staging.name[len(f".{path.name}.tmp-"):])
        os.replace(path, old)
        os.replace(staging, path)
        shutil.rmtree(old, ignore_errors=True)
        return
    if path.exists() or path.is_symlink():
        path.unlink()   # a file or link where the directory goes
    os.replace(staging, path)


@contextmanager
def staged_directory(path: Path) -> Iterator[Path]:
    """A staging dir beside `path` that replaces `path` when the block succeeds (else is
    deleted); leftovers of killed writers of `path` are cleaned up first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_directory_leftovers(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    staging.chmod(0o755)   # mkdtemp makes it private; the result is an ordinary directory
    try:
        yield staging
        replace_directory(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def scratch_directory(prefix: str) -> Path:
    """A new private dir in the system temp dir, named `prefix` + this pid, deleted when this
    process exits; those a killed process of the same `prefix` left are deleted now."""
    import atexit

    path = Path(tempfile.mkdtemp(prefix=scratch_prefix(prefix)))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def scratch_prefix(prefix: str, root: Path | None = None) -> str:
    """`prefix` + this pid + "-", for a temp dir in `root` (default: the system temp dir) that
    a later process can tell from a live one's; dirs of `prefix` in `root` that killed
    processes left are deleted now."""
    root = Path(root if root is not None else tempfile.gettempdir())
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)-.*")
    for entry in root.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and not _running(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
    return f"{prefix}{os.getpid()}-"


@contextmanager
def temp_files_in(directory: Path) -> Iterator[None]:
    """Inside the block the system temp dir is `directory` (a `scratch_directory`), for this
    process (tempfile) and the processes it starts (TMPDIR): the temp files that libraries and
    tools make there (TVM's build workspaces, a compiler's) are deleted with it, and a killed
    run's with its scratch dir by the next run, instead of piling up in /tmp."""
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(directory)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
