"""kill -9 at any moment loses nothing: the directory swap of tinyasr.model.atomic (model dirs,
deployables), and each long-running command killed mid-run and run again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyasr.model import atomic


def _dead_pid() -> int:
    """The pid of a process that has exited (a killed writer)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_staged_directory_replaces_old_aside_then_in(tmp_path):
    out = tmp_path / "dep"
    with atomic.staged_directory(out) as staging:
        (staging / "a").write_text("old")
    seen = []
    real_replace = os.replace

    def spy(src, dst):   # the order of renames, and that `out` is complete after each
        real_replace(src, dst)
        seen.append((Path(src).name, Path(dst).name, (out / "a").read_text()
                     if out.exists() else None))

    atomic.os.replace = spy
    try:
        with atomic.staged_directory(out) as staging:
            (staging / "a").write_text("new")
    finally:
        atomic.os.replace = real_replace
    assert [s[1] for s in seen][-1] == "dep" and seen[0][0] == "dep"   # aside first, then in
    assert seen[-1][2] == "new" and (out / "a").read_text() == "new"
    assert _hidden(tmp_path) == []


def test_leftovers_of_a_killed_writer(tmp_path):
    """A kill between the renames leaves the old dir aside and no `out`: the next writer puts
    it back (or a reader finds nothing half-made); a killed writer's staging is deleted."""
    pid = _dead_pid()
    out = tmp_path / "dep"
    old = tmp_path / f".dep.old-{pid}-abc"
    staging = tmp_path / f".dep.tmp-{pid}-abc"
    old.mkdir()
    (old / "a").write_text("old")
    staging.mkdir()
    (staging / "a").write_text("half")
    live = tmp_path / f".dep.tmp-{os.getpid()}-xyz"   # a running writer's: left alone
    live.mkdir()
    atomic.clean_directory_leftovers(out)
    assert (out / "a").read_text() == "old"
    assert _hidden(tmp_path) == [live.name]
    # with `out` present, a set-aside old copy is just deleted
    old.mkdir()
    atomic.clean_directory_leftovers(out)
    assert (out / "a").read_text() == "old" and _hidden(tmp_path) == [live.name]


def test_stale_atomic_file_temps_are_removed(tmp_path):
    target = tmp_path / "x.json"
    stale = tmp_path / f".x.json.{_dead_pid()}.tmp"
    stale.write_text("half")
    with atomic.atomic_file(target, "w") as handle:
        handle.write("{}")
    assert target.read_text() == "{}" and not stale.exists()
    assert _hidden(tmp_path) == []
