"""kill -9 at any moment loses nothing: the directory swap of tinyasr.model.common.atomic (model
dirs, deployables), and each long-running command killed mid-run and run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyasr.model.common import atomic


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


def test_scratch_directories_of_killed_processes_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"tinyasr-x-{_dead_pid()}-abc"
    stale.mkdir()
    live = tmp_path / f"tinyasr-x-{os.getpid()}-abc"
    live.mkdir()
    made = atomic.scratch_directory("tinyasr-x-")
    assert made.is_dir() and live.is_dir() and not stale.exists()


# --- commands killed mid-run and run again ----------------------------------------------------

# Runs the command line in this process; with a marker, SIGKILLs itself right before or right
# after the first os.replace whose destination's name contains it (a kill at an exact point of a
# write: before, the data is complete in its temp file and the destination untouched).
RUNNER = """
import os, signal, sys
after = os.environ.get("TINYASR_TEST_KILL_AFTER_RENAME_TO")
before = os.environ.get("TINYASR_TEST_KILL_BEFORE_RENAME_TO")
if after or before:
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if before and before in os.path.basename(str(dst)):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if after and after in os.path.basename(str(dst)):
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
from tinyasr.scripts.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start(args: list[str], kill_after_rename_to: str | None = None,
           kill_before_rename_to: str | None = None, **env: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", **env)
    if kill_after_rename_to:
        env["TINYASR_TEST_KILL_AFTER_RENAME_TO"] = kill_after_rename_to
    if kill_before_rename_to:
        env["TINYASR_TEST_KILL_BEFORE_RENAME_TO"] = kill_before_rename_to
    return subprocess.Popen([sys.executable, "-c", RUNNER, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _run(args: list[str], kill_after_rename_to: str | None = None,
         kill_before_rename_to: str | None = None, **env: str) -> tuple[int, str]:
    process = _start(args, kill_after_rename_to, kill_before_rename_to, **env)
    out, _ = process.communicate(timeout=900)
    return process.returncode, out


def _kill_when(args: list[str], ready, timeout: float = 600, **env: str) -> bool:
    """Starts the command and SIGKILLs it (and any process it started) once `ready()` holds;
    False when it ended first."""
    process = _start(args, **env)
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return True
        time.sleep(0.02)
    process.kill()
    process.communicate()
    return False


def _appears(parent: Path, prefix: str):
    return lambda: any(p.name.startswith(prefix) for p in parent.iterdir())


def _after(seconds: float):
    start = time.monotonic()
    return lambda: time.monotonic() - start > seconds


@pytest.fixture(scope="module")
def model_dir(tiny_random_model, tmp_path_factory) -> Path:
    from tinyasr.model.network.model_dir import save_model_dir

    path = tmp_path_factory.mktemp("kill") / "model"
    save_model_dir(*tiny_random_model, path)
    return path


def _deployable_ok(path: Path) -> dict:
    from tinyasr.compile.deployable import check_deployable_files, read_manifest

    manifest = read_manifest(path)
    check_deployable_files(path, manifest)
    return manifest


@pytest.mark.slow  # four compiles of the tiny model: minutes on a loaded machine
def test_compile_force_killed_anywhere_keeps_a_whole_deployable(model_dir: Path, tmp_path: Path):
    out = tmp_path / "dep"
    compile_args = ["compile", model_dir, "--target", "host", "--untuned", "--out", out]
    # killed during a first compile: nothing at --out, and the rerun makes it whole
    assert _kill_when(compile_args, _after(3.0))
    assert not out.exists()
    code, text = _run(compile_args)
    assert code == 0, text
    _deployable_ok(out)
    (out / "old-marker").write_text("")   # tells the old deployable from a new one
    assert _hidden(tmp_path) == []

    # --force killed while writing the new one: the old one stays, whole
    assert _kill_when([*compile_args, "--force"], _appears(tmp_path, ".dep.tmp-"))
    _deployable_ok(out)
    assert (out / "old-marker").exists()

    # --force killed between the renames (old aside, new not yet in): the next run puts the old
    # one back (so a plain compile refuses to overwrite it) and removes the new staging
    code, _ = _run([*compile_args, "--force"], kill_after_rename_to=".dep.old-")
    assert code == -signal.SIGKILL and not out.exists()
    code, text = _run(compile_args)
    assert code == 2 and "already exists" in text, text
    _deployable_ok(out)
    assert (out / "old-marker").exists() and _hidden(tmp_path) == []

    # --force to the end: the new one, nothing left beside it
    code, text = _run([*compile_args, "--force"])
    assert code == 0, text
    _deployable_ok(out)
    assert not (out / "old-marker").exists() and _hidden(tmp_path) == []


def test_compress_killed_mid_write_leaves_no_half_file(model_dir: Path, tmp_path: Path):
    from tinyasr.model.network.compressed import load_compressed

    out = tmp_path / "m.tac"
    args = ["compress", "quantize", model_dir, "--activations", "dynamic", "--out", out]
    code, _ = _run(args, kill_after_rename_to="never")   # baseline: the run's length
    assert code == 0 and out.exists()
    out.unlink()
    # killed with the whole file in its temp file, before the rename (polling for the temp
    # file missed it: a small .tac is written in milliseconds): nothing at --out
    code, _ = _run(args, kill_before_rename_to="m.tac")
    assert code == -signal.SIGKILL and not out.exists()
    # killed right after the rename: the file is whole
    code, _ = _run(args, kill_after_rename_to="m.tac")
    assert code == -signal.SIGKILL
    load_compressed(out)
    code, text = _run(args)
    assert code == 0, text
    load_compressed(out)
    assert _hidden(tmp_path) == []


def test_report_killed_mid_run_then_rerun_writes_every_file_whole(model_dir: Path,
                                                                   tmp_path: Path):
    import json

    from tinyasr.model.network.pretrained_paths import SAMPLES_DIR

    data = tmp_path / "corpus"
    lines = (SAMPLES_DIR / "wav.scp").read_text().splitlines()[:2]
    texts = dict(line.split(" ", 1) for line in (SAMPLES_DIR / "text").read_text().splitlines())
    for split in ("dev", "test"):
        (data / split).mkdir(parents=True)
        ids = [line.split()[0] for line in lines]
        (data / split / "wav.scp").write_text("".join(
            f"{u} {SAMPLES_DIR / line.split()[1]}\n" for u, line in zip(ids, lines, strict=True)))
        (data / split / "text").write_text("".join(f"{u} {texts[u]}\n" for u in ids))
    out = tmp_path / "report"
    args = ["report", "--data", data, "--out", out, f"fp32={model_dir}"]
    # killed while decoding (its packed stage file is there) and right after report.json
    assert _kill_when(args, lambda: (out / "fp32.tac").exists())
    code, _ = _run(args, kill_after_rename_to="report.json")
    assert code == -signal.SIGKILL and not (out / "report.png").exists()
    json.loads((out / "report.json").read_text())
    code, text = _run(args)
    assert code == 0, text
    assert json.loads((out / "report.json").read_text())["stages"][0]["name"] == "fp32"
    assert (out / "report.md").read_text() and (out / "report.png").stat().st_size > 0
    assert _hidden(out) == []


@pytest.mark.slow  # tunes a few trials twice: minutes
def test_tune_killed_while_measuring_keeps_its_records_and_resumes(model_dir: Path,
                                                                   tmp_path: Path):
    from tinyasr.compile.schedule_database import RECORD_FILE

    work_dir, temp = tmp_path / "db", tmp_path / "tmp"
    temp.mkdir()
    args = ["tune", model_dir, "--target", "host", "--trials", "4", "--work-dir", work_dir,
            "--ops", "conv2d"]
    records = work_dir / RECORD_FILE

    def measured() -> bool:
        return records.exists() and records.read_bytes().count(b"\n") >= 1

    assert _kill_when(args, measured, TMPDIR=str(temp))
    before = records.read_text().rpartition("\n")[0].splitlines()   # a torn last line dropped
    assert list(temp.glob("tinyasr-tune-logs-*"))   # the killed run's logs, left behind
    code, text = _run(args, TMPDIR=str(temp))
    assert code == 0, text
    after = records.read_text().splitlines()
    assert after[:len(before)] == before
    assert not list(temp.glob("tinyasr-tune-logs-*"))   # removed by the rerun, its own at exit
    assert _hidden(work_dir) == []
