"""kill -9 at any moment loses nothing: the directory swap of tinyasr.model.common.atomic (model
dirs, deployables), and each long-running command killed mid-run and run again."""

from __future__ import annotations

import json
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
    # the killed run's logs, and its builders' temp files with them, left behind in its scratch
    logs = sorted(p.name for p in temp.glob("tinyasr-tune-logs-*"))
    assert logs and _litter(temp) == logs
    code, text = _run(args, TMPDIR=str(temp))
    assert code == 0, text
    after = records.read_text().splitlines()
    assert after[:len(before)] == before
    assert _litter(temp) == []   # removed by the rerun, its own at exit
    assert _hidden(work_dir) == []


def _litter(temp: Path) -> list[str]:
    """What a run left in its temp dir, but torch's per-user compile cache
    (torchinductor_USER: made by torch.export, written atomically and reused by every run)."""
    return sorted(p.name for p in temp.iterdir() if not p.name.startswith("torchinductor_"))


def _scratch_dirs(temp: Path, prefix: str) -> list[Path]:
    return sorted(p for p in temp.iterdir() if p.name.startswith(prefix))


def _measuring() -> bool:
    """Whether a process this test started has spawned one (the bench measures every row in
    a freshly spawned process)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


@pytest.mark.slow  # about two benches of the tiny model, in pieces: minutes
def test_bench_killed_anywhere_loses_nothing_and_leaves_only_its_scratch(
        model_dir: Path, tiny_random_model, tmp_path: Path):
    """bench killed mid-export, mid-link of a deployable and mid-measure: nothing at --out (or
    the previous results, byte for byte), and every file it made in the temp dir (ONNX, TVM
    deployables and their object files, ORT's quantizer's temps) inside its one scratch dir,
    which the next bench deletes."""
    from tinyasr.model.compression.quantize import quantizable_layers
    from tinyasr.model.network.compressed import write_compressed
    from tinyasr.model.network.int8 import Activations, Quantization

    model, tokenizer = tiny_random_model
    int8 = tmp_path / "int8.tac"
    write_compressed(int8, model, tokenizer, None,
                     Quantization(Activations.DYNAMIC, list(quantizable_layers(model))))
    temp, out = tmp_path / "tmp", tmp_path / "bench"
    temp.mkdir()
    args = ["bench", "--fp32-model", model_dir, "--int8-model", int8, "--lengths", "1",
            "--repeats", "1", "--rounds", "1", "--out", out, "-q"]

    def in_scratch(name: str):
        return lambda: any(any(p.name.startswith(name) for p in d.iterdir())
                           for d in _scratch_dirs(temp, "tinyasr-bench-"))

    killed = []
    for ready in (in_scratch("onnx-fp32"), in_scratch(".tvm-fp32.tmp-")):
        assert _kill_when(args, ready, TMPDIR=str(temp))
        left = _scratch_dirs(temp, "tinyasr-bench-")
        assert _litter(temp) == [p.name for p in left]   # nothing else
        assert len(left) == 1 and left[0] not in killed   # the last run's; the one before: gone
        killed.extend(left)
        assert not out.exists() or not any(out.iterdir())

    code, text = _run(args, TMPDIR=str(temp))
    assert code == 0, text
    assert _litter(temp) == []   # its own scratch deleted, the killed runs' too
    results = {name: (out / name).read_bytes() for name in ("bench.json", "bench.md", "bench.png")}
    assert json.loads(results["bench.json"])["rounds"] == 1
    assert _hidden(out) == []

    # killed while a row is being measured: the finished results stay as they were
    assert _kill_when(args, _measuring, TMPDIR=str(temp))
    assert {name: (out / name).read_bytes() for name in results} == results
    assert _hidden(out) == []
    left = _scratch_dirs(temp, "tinyasr-bench-")
    assert len(left) == 1 and _litter(temp) == [left[0].name]


def _data_args(command: str, out: Path) -> list:
    from tinyasr.model.network.pretrained_paths import SAMPLES_DIR

    extra = {"subset": ["--count", "3"], "shard": ["--per-shard", "4"],
             "augment-preview": ["--count", "2"]}[command]
    return ["data", command, SAMPLES_DIR, out, *extra, "-q"]


@pytest.mark.parametrize("command", ["subset", "shard", "augment-preview"])
def test_data_command_killed_at_its_renames_keeps_a_whole_output(command: str, tmp_path: Path):
    """A data command's OUT is built beside it and swapped in: killed before the new one goes
    in, nothing (or the old one) is at OUT; killed with the old one set aside, the next run
    puts it back (so a run without --force refuses it); no temp dir outlives a rerun."""
    out = tmp_path / "made"
    args = _data_args(command, out)
    code, _ = _run(args, kill_before_rename_to="made")
    assert code == -signal.SIGKILL and not out.exists() and len(_hidden(tmp_path)) == 1
    code, text = _run(args)
    assert code == 0, text
    made = sorted(p.name for p in out.iterdir())
    assert made and _hidden(tmp_path) == []
    (out / "old-marker").write_text("")

    code, _ = _run([*args, "--force"], kill_before_rename_to="made")   # before the old goes
    assert code == -signal.SIGKILL and (out / "old-marker").exists()
    code, _ = _run([*args, "--force"], kill_after_rename_to=".made.old-")   # between renames
    assert code == -signal.SIGKILL and not out.exists()
    code, text = _run(args)
    assert code == 2 and "already exists" in text, text
    assert (out / "old-marker").exists() and _hidden(tmp_path) == []

    code, text = _run([*args, "--force"])
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == made and _hidden(tmp_path) == []


def test_data_synth_killed_while_rendering_then_rerun(tmp_path: Path):
    out, temp = tmp_path / "corpus", tmp_path / "tmp"
    temp.mkdir()
    args = ["data", "synth", out, "--train", "3", "--dev", "1", "--test", "1",
            "--test-unseen-engine", "1", "--jobs", "1", "-q"]

    def rendering() -> bool:
        return any(len(list((build / "wavs").glob("*.wav"))) >= 1
                   for build in tmp_path.glob(".corpus.tmp-*") if (build / "wavs").is_dir())

    assert _kill_when(args, rendering, TMPDIR=str(temp))
    assert not out.exists() and len(_hidden(tmp_path)) == 1
    code, text = _run(args, TMPDIR=str(temp))
    assert code == 0, text
    assert (out / "synth.json").exists() and _hidden(tmp_path) == []
    assert list(temp.iterdir()) == []


@pytest.mark.slow  # three compiles of the tiny model, two of them to the end
def test_compile_dump_ir_killed_leaves_no_partial_dump(model_dir: Path, tmp_path: Path):
    """--dump-ir's phases are staged inside DIR and published when the last is written: a
    compile killed midway leaves DIR as it was (nothing, or the previous whole dump), its
    staging is deleted by the next dump, and no temp file (TVM's build workspace, the
    linker's) is left in the temp dir."""
    from tinyasr.compile.pipeline import PHASE_FILE

    out, dumps, temp = tmp_path / "dep", tmp_path / "ir", tmp_path / "tmp"
    temp.mkdir()
    args = ["compile", model_dir, "--target", "host", "--untuned", "--out", out,
            "--dump-ir", dumps]

    def phases() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in dumps.iterdir() if PHASE_FILE.fullmatch(p.name)}

    def staged(count: int):
        return lambda: any(len(list(d.iterdir())) >= count for d in dumps.glob(".tinyasr-ir-*"))

    assert _kill_when(args, staged(3), TMPDIR=str(temp))
    assert phases() == {} and len(_hidden(dumps)) == 1 and not out.exists()
    assert _litter(temp) == []
    code, text = _run(args, TMPDIR=str(temp))
    assert code == 0, text
    whole = phases()
    names = sorted(whole)
    assert names[-1].endswith("-lower.py") and [n[:2] for n in names] == [
        f"{i:02d}" for i in range(1, len(names) + 1)]
    assert _hidden(dumps) == [] and _litter(temp) == []
    (dumps / "notes.txt").write_text("mine")   # not a phase file: left alone

    # --force killed after some phases (the old dump stays, whole), then killed while linking
    # the new deployable (the dump is published by then; the link's temp files are in the
    # deployable's staging, which the next compile deletes)
    assert _kill_when([*args, "--force"], staged(3), TMPDIR=str(temp))
    assert phases() == whole and len(_hidden(dumps)) == 1
    assert _kill_when([*args, "--force"], _appears(tmp_path, ".dep.tmp-"), TMPDIR=str(temp))
    assert sorted(phases()) == names and _hidden(dumps) == []
    assert _litter(temp) == []
    code, text = _run([*args, "--force"], TMPDIR=str(temp))
    assert code == 0, text
    assert sorted(phases()) == names and (dumps / "notes.txt").read_text() == "mine"
    assert _hidden(dumps) == [] and _hidden(tmp_path) == [] and _litter(temp) == []
    _deployable_ok(out)


def test_export_onnx_killed_before_its_renames_leaves_no_half_graph(model_dir: Path,
                                                                    tmp_path: Path):
    import onnx

    out = tmp_path / "onnx"
    args = ["export", "onnx", model_dir, out, "-q"]
    code, _ = _run(args, kill_before_rename_to="encode.onnx")   # both graphs whole, staged
    assert code == -signal.SIGKILL and len(list(out.iterdir())) == len(_hidden(out)) == 1
    code, text = _run(args)
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["decode.onnx", "encode.onnx"]
    for graph in out.iterdir():
        onnx.checker.check_model(onnx.load(str(graph)))
