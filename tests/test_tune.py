"""`tinyasr tune`: real MetaSchedule tuning (XGBoost cost model) of one small task of a tiny
model on the host, resuming, the database's bad cases, and compile applying the database."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import te
from tvm.s_tir import meta_schedule as ms
from tvm.script import tirx as T

from tinyasr.compile.deployable import build_deployable, read_manifest, tuning_database
from tinyasr.compile.kernels.fp32 import VectorUnit, fp32_matmul_tunable
from tinyasr.compile.kernels.int8 import VNNI, int8_matmul_kernel
from tinyasr.compile.kernels.tunable import MIN_GAIN, KernelChoices, Params, Tunable
from tinyasr.compile.pipeline import IRDumper, import_model, legalize
from tinyasr.compile.schedule_database import (
    KERNEL_FILE,
    RECORD_FILE,
    REPLAY_FILE,
    WORKLOAD_FILE,
    database_digest,
    kernel_timings,
    open_database,
    read_kernel_records,
    repair_database,
    static_workload,
    workload_flops,
)
from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.schedules.kernel_search import check_inputs, compare_outputs, search_kernels
from tinyasr.schedules.measure import local_measurement
from tinyasr.schedules.tune import extract_tasks, on_stored_workload, task_flops, tuning_target
from tinyasr.scripts.cli import main
from tinyasr.targets.boards import get_board, host_target
from tinyasr.targets.host.runner import CompiledModelRunner

TRIALS = 2


def unique_task(model_dir: Path, target: dict, op: str) -> str:
    """The heaviest task of `op` for `target` named so that no other task's name contains it."""
    imported = import_model(load_model_dir(model_dir)[0], IRDumper(None))
    names = [t.task_name for t in extract_tasks(imported, tuning_target(target), [op])]
    return next(n for n in names if sum(n in other for other in names) == 1)


@pytest.fixture(scope="module")
def task_name(model_dir: Path) -> str:
    """A small host task: a subsampling convolution (its 8 channels are narrower than a
    vector; every matmul is a hand-written kernel)."""
    return unique_task(model_dir, host_target(), "conv2d")


def test_tasks_come_heaviest_first(model_dir: Path):
    """So that a time budget is spent where the time goes: the heaviest (softmax, the narrow
    convolutions; the matmuls are hand-written kernels) first, FLOP-free ones (reshapes,
    copies) last."""
    imported = import_model(load_model_dir(model_dir)[0], IRDumper(None))
    tasks = extract_tasks(imported, tuning_target(host_target()), None)
    flops = [task_flops(task) for task in tasks]
    assert flops == sorted(flops, reverse=True) and flops[0] > 0 and flops[-1] == 0


def test_hand_written_kernels_are_ordered_as_flop_free():
    """TVM's FLOP estimator cannot read their vector expressions; the int8 model's tasks must
    still sort (it crashed `tinyasr tune` on every int8 model once)."""
    kernel = int8_matmul_kernel(VNNI, 144, 144)
    assert workload_flops(static_workload(kernel)) is None


def _tune(model_dir: Path, work_dir: Path, task_name: str, trials: int) -> int:
    return main(["tune", str(model_dir), "--target", "host", "--trials", str(trials),
                 "--work-dir", str(work_dir), "--ops", task_name])


@pytest.fixture(scope="module")
def tuned(model_dir: Path, task_name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work_dir = tmp_path_factory.mktemp("tune") / "db"
    assert _tune(model_dir, work_dir, task_name, TRIALS) == 0
    return work_dir


def _open(work_dir: Path):
    return open_database(work_dir, "host", host_target())


def _records(work_dir: Path) -> list[str]:
    return (work_dir / RECORD_FILE).read_text().splitlines()


def test_tuning_records_every_trial_with_a_measured_latency(tuned: Path, task_name: str):
    assert len((tuned / WORKLOAD_FILE).read_text().splitlines()) == 1
    records = _records(tuned)
    assert len(records) == TRIALS
    assert all(task_name not in r for r in records)   # records point at the workload by index
    database = _open(tuned)
    seconds = [float(s) for r in database.get_all_tuning_records() for s in r.run_secs]
    assert len(seconds) == TRIALS   # each trial has its time (a failed one records 1e10 s)


def test_rerun_keeps_the_records_and_tunes_no_more(model_dir: Path, tuned: Path,
                                                   task_name: str, tmp_path: Path, capsys):
    work_dir = tmp_path / "db"
    shutil.copytree(tuned, work_dir)
    before = _records(work_dir)
    capsys.readouterr()
    replays = (work_dir / REPLAY_FILE).read_text()
    assert _tune(model_dir, work_dir, task_name, TRIALS) == 0
    assert _records(work_dir) == before
    captured = capsys.readouterr()
    out = captured.out + captured.err   # progress lines are on stderr
    assert f"{task_name}: best" in out
    # nothing it compared changed: the replay is not timed again
    assert "symbolic replay" not in out and (work_dir / REPLAY_FILE).read_text() == replays


def test_zero_trials_only_times_the_replays_again(model_dir: Path, tuned: Path,
                                                 task_name: str, tmp_path: Path):
    work_dir = tmp_path / "db"
    shutil.copytree(tuned, work_dir)
    before = _records(work_dir)
    (work_dir / REPLAY_FILE).unlink()
    assert _tune(model_dir, work_dir, task_name, 0) == 0
    assert _records(work_dir) == before
    timings = json.loads((work_dir / REPLAY_FILE).read_text()).values()
    assert [t["function"] for t in timings] == [task_name]


@pytest.mark.slow
def test_resume_adds_trials_after_the_earlier_ones(model_dir: Path, tuned: Path,
                                                   task_name: str, tmp_path: Path):
    work_dir = tmp_path / "db"
    shutil.copytree(tuned, work_dir)
    before = _records(work_dir)
    assert _tune(model_dir, work_dir, task_name, TRIALS + 1) == 0
    after = _records(work_dir)
    assert len(after) == TRIALS + 1 and after[:TRIALS] == before


def test_a_torn_last_record_is_dropped_with_a_warning(tuned: Path, tmp_path: Path, capsys):
    """What a kill -9 in the middle of a write leaves: half a line at the end."""
    work_dir = tmp_path / "db"
    shutil.copytree(tuned, work_dir)
    records = _records(work_dir)
    with (work_dir / RECORD_FILE).open("a") as file:
        file.write(records[-1][: len(records[-1]) // 2])
    database = _open(work_dir)
    assert "dropped a torn last line" in capsys.readouterr().err
    assert len(database.get_all_tuning_records()) == TRIALS
    assert _records(work_dir) == records


def test_a_corrupt_record_before_the_end_names_file_and_line(tuned: Path, tmp_path: Path):
    work_dir = tmp_path / "db"
    shutil.copytree(tuned, work_dir)
    records = _records(work_dir)
    (work_dir / RECORD_FILE).write_text("\n".join(["{not json", *records]) + "\n")
    with pytest.raises(InputError, match=f"{RECORD_FILE}:1: corrupt tuning record"):
        repair_database(work_dir)


def _row_sums(name: str) -> tvm.IRModule:
    rows = te.placeholder((8, 64), name=f"{name}_rows")
    k = te.reduce_axis((0, 64), name="k")
    sums = te.compute((8,), lambda i: te.sum(rows[i, k], axis=k), name=f"{name}_sum")
    return tvm.IRModule({"main": te.create_prim_func([rows, sums])})


def test_an_equal_function_under_other_names_is_tuned_on_the_stored_workload(tmp_path: Path):
    """MetaSchedule files the record of a function equal to a stored one under that workload,
    and loading the database replays the trace there: the trace must name its blocks."""
    database = _open(tmp_path)
    database.commit_workload(_row_sums("first"))
    target = tuning_target(host_target())
    task = on_stored_workload(database, ms.ExtractedTask(
        "sums", _row_sums("second"), target, [_row_sums("second")], 1))
    schedule = tvm.s_tir.Schedule(task.mod)
    schedule.split(schedule.get_loops(schedule.get_sblock("first_sum"))[1], [None, 16])
    database.commit_tuning_record(ms.database.TuningRecord(
        schedule.trace, database.commit_workload(task.mod), [1e-6], target))
    assert len(_open(tmp_path).get_all_tuning_records()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--target", "rpi4", "--trials", "2"], "measure on boards with --tracker HOST:PORT"),
    (["--target", "rpi4", "--trials", "2", "--tracker", "127.0.0.1:1"], "127.0.0.1:1"),
    (["--target", "host", "--trials", "-1"], "--trials -1: must be at least 1"),
    (["--target", "rpi4", "--trials", "0", "--tracker", "127.0.0.1:1"],
     "0, re-timing the tuned schedules, measures on this machine only"),
    (["--target", "nosuch", "--trials", "2"], "unknown target 'nosuch'"),
    (["--target", "host", "--trials", "1", "--int8"], "is a SAN-M model; tune its int8 .tac"),
])
def test_bad_arguments_are_one_line_errors(argv: list[str], message: str, tmp_path: Path,
                                           capsys):
    assert main(["tune", "--work-dir", str(tmp_path), *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_whisper_int8_kernels_are_tuned_into_the_device_database(tmp_path: Path, capsys):
    """`tune whisper-tiny.en --int8` tunes the deployable `compile whisper-tiny.en --int8`
    builds: here one of its int8 kernel templates, two points timed into the database's
    kernel records, which compile applies by kernel name as for SAN-M."""
    assert main(["tune", "whisper-tiny.en", "--int8", "--target", "host", "--trials", "2",
                 "--ops", "384x240", "--work-dir", str(tmp_path)]) == 0
    records = read_kernel_records(tmp_path)
    assert len({record.kernel for record in records}) == 1 and len(records) == 2
    assert records[0].kernel.startswith("int8_matmul_") and records[0].kernel.endswith("_384x240")
    assert all(record.us is not None and record.us > 0 for record in records)
    assert f"{tmp_path}: 1 tasks" in capsys.readouterr().out


def test_ops_matching_no_task_is_an_error(model_dir: Path, tmp_path: Path, capsys):
    assert main(["tune", str(model_dir), "--target", "host", "--trials", "1",
                 "--work-dir", str(tmp_path), "--ops", "no_such_op"]) == 2
    assert "--ops no_such_op: matches none of the model" in capsys.readouterr().err


# The hand-written kernels' parameters (compile/kernels/tunable.py).

def kernel_templates(model_dir: Path, target: dict) -> dict[str, Tunable]:
    """The model's tunable kernels for `target`, by name."""
    choices = KernelChoices()
    legalize(import_model(load_model_dir(model_dir)[0], IRDumper(None)), tuning_target(target),
             IRDumper(None), choices)
    return choices.made


@pytest.fixture(scope="module")
def kernel_tuned(model_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, Tunable]:
    """A database with KERNEL_TRIALS points of the tiny model's first fp32 matmul kernel."""
    tunable = next(t for name, t in sorted(kernel_templates(model_dir, host_target()).items())
                   if name.startswith("fp32_matmul"))
    work_dir = tmp_path_factory.mktemp("kernels") / "db"
    assert main(["tune", str(model_dir), "--target", "host", "--trials", str(KERNEL_TRIALS),
                 "--work-dir", str(work_dir), "--ops", tunable.name]) == 0
    return work_dir, tunable


KERNEL_TRIALS = 3


def test_a_timed_choice_replaces_the_default_only_when_clearly_faster():
    """MIN_GAIN faster than the default's own timing, and still in the kernel's space."""
    tunable = fp32_matmul_tunable(VectorUnit(16, 32), 144, 144)
    default, other = tunable.space[0], tunable.space[3]

    def chosen(timings: list) -> dict:
        return KernelChoices({tunable.name: timings}).choose(tunable)

    assert chosen([(default, 10.0), (other, 10.0 / MIN_GAIN)]) == other
    assert chosen([(default, 10.0), (other, 9.9)]) == default            # within the noise
    assert chosen([(other, 1.0)]) == default                            # default never timed
    assert chosen([(default, 10.0), ({"rows": 99, "blocks": 1}, 1.0)]) == default   # gone


def test_kernel_search_times_the_default_first_then_others(kernel_tuned, model_dir: Path,
                                                           capsys):
    work_dir, tunable = kernel_tuned
    records = read_kernel_records(work_dir)
    assert [r.kernel for r in records] == [tunable.name] * KERNEL_TRIALS
    assert records[0].params == tunable.default
    assert len({json.dumps(r.params) for r in records}) == KERNEL_TRIALS
    assert all(r.params in tunable.space and r.us is not None and r.us > 0 for r in records)
    # MetaSchedule tuned nothing: the kernel is not one of its tasks
    assert (work_dir / RECORD_FILE).read_text() == ""
    # re-run: the points recorded count, none is timed again
    assert main(["tune", str(model_dir), "--target", "host", "--trials", str(KERNEL_TRIALS),
                 "--work-dir", str(work_dir), "--ops", tunable.name]) == 0
    assert read_kernel_records(work_dir) == records
    assert f"{tunable.name}: best" in capsys.readouterr().err


def scaling_tunable() -> Tunable:
    """A template whose points differ in loop order (the same results) and in a scale, which
    no real template's parameter may change: the point with scale 2 is a wrong kernel."""

    def make(params: Params) -> tvm.tirx.PrimFunc:
        scale, backwards = float(params["scale"]), params["backwards"] == 1

        @T.prim_func
        def kernel(x: T.Buffer((16, 64), "float32"), keep: T.Buffer((16, 64), "bool"),
                   out: T.Buffer((16, 64), "float32")):
            for i, j in T.grid(16, 64):
                out[15 - i if backwards else i, j] = T.if_then_else(
                    keep[15 - i if backwards else i, j], x[15 - i if backwards else i, j] * scale,
                    T.float32(0))
        return kernel

    return Tunable("scale_16x64", make, ({"scale": 1, "backwards": 0},
                                         {"scale": 1, "backwards": 1},
                                         {"scale": 2, "backwards": 0}))


def test_kernel_search_records_a_point_that_computes_otherwise_as_an_error(tmp_path: Path):
    """Each point runs once on the inputs the default runs on: one whose results differ is
    recorded with the difference and no time, so compile can never choose it however fast."""
    tunable, lines = scaling_tunable(), []
    [result] = search_kernels([tunable], tmp_path, tvm.target.Target(tuning_target(host_target())),
                              3, local_measurement(), lines.append)
    same, reordered, wrong = read_kernel_records(tmp_path)
    assert same.us is not None and reordered.us is not None and same.error is None
    assert wrong.us is None and wrong.error is not None
    assert wrong.error.startswith("other results than the default parameters: argument 2 off by")
    assert result.best in (same.params, reordered.params) and result.trials == 3
    timed = kernel_timings([same, reordered, wrong])[tunable.name]
    assert wrong.params not in [params for params, _ in timed]


def test_outputs_compare_within_rounding_and_nans_in_place():
    reference = [np.array([1.0, np.nan, -200.0], np.float32), np.array([3, -4], np.int8)]
    assert compare_outputs(reference, [np.array([1.0, np.nan, -200.01], np.float32),
                                       np.array([3, -4], np.int8)]) is None
    assert "NaNs in argument 0" in compare_outputs(
        reference, [np.array([1.0, 2.0, -200.0], np.float32), reference[1]])
    assert "argument 1 off by 1" in compare_outputs(reference, [reference[0],
                                                                np.array([3, -3], np.int8)])
    inputs = check_inputs(scaling_tunable().make({"scale": 1, "backwards": 0}))
    assert [(a.shape, a.dtype) for a in inputs] == [((16, 64), np.float32), ((16, 64), np.bool_),
                                                   ((16, 64), np.float32)]
    assert np.array_equal(inputs[0], check_inputs(scaling_tunable().make(
        {"scale": 2, "backwards": 1}))[0])


def test_compile_builds_each_kernel_with_its_fastest_recorded_parameters(
        kernel_tuned, model_dir: Path, tmp_path: Path):
    """A non-default point recorded fastest: the deployable's kernel is built with it (the
    manifest names it, the dump has its tile of accumulators) and computes what the untuned
    deployable computes."""
    tuned_db, tunable = kernel_tuned
    work_dir = tmp_path / "db"
    shutil.copytree(tuned_db, work_dir)
    chosen = tunable.space[-1]   # the smallest tile: never the default
    (work_dir / KERNEL_FILE).write_text("".join(
        json.dumps({"kernel": tunable.name, "params": params, "us": us}) + "\n"
        for params, us in [(tunable.default, 2.0), (chosen, 1.0), (tunable.space[1], None)]))
    build_deployable(model_dir, get_board("host"), tmp_path / "tuned", database=work_dir,
                     dump_dir=tmp_path / "ir")
    build_deployable(model_dir, get_board("host"), tmp_path / "untuned", untuned=True)
    entry = read_manifest(tmp_path / "tuned")["tuning_database"]
    assert entry["tuned_kernels"] == {tunable.name: chosen}
    dense = next((tmp_path / "ir").glob("*-dense.py")).read_text()
    kernel = dense[dense.index(f"def {tunable.name}("):]
    lanes = int(tunable.name.split("_")[2].split("x")[0])
    accumulators = chosen["rows"] * chosen["blocks"] * lanes
    assert f"acc = T.alloc_local(({accumulators},))" in kernel[:kernel.find("\n    @")]
    samples = load_wav(read_data_dir(SAMPLES_DIR)[0].wav)
    tuned, _ = CompiledModelRunner(tmp_path / "tuned").ctc_log_probs(samples)
    untuned, _ = CompiledModelRunner(tmp_path / "untuned").ctc_log_probs(samples)
    np.testing.assert_allclose(tuned, untuned, atol=1e-4)


def test_a_corrupt_kernel_record_builds_untuned_with_a_warning(kernel_tuned, tmp_path: Path,
                                                               capsys):
    work_dir = tmp_path / "db"
    shutil.copytree(kernel_tuned[0], work_dir)
    with open(work_dir / KERNEL_FILE, "a") as handle:
        handle.write('{"kernel": "x", "params": 3, "us": 1.0}\n')
    assert tuning_database(get_board("host"), work_dir) is None
    lines = len(read_kernel_records(kernel_tuned[0])) + 1
    assert (f"{work_dir / KERNEL_FILE}:{lines}: not a kernel parameter record: building untuned"
            in capsys.readouterr().err)


# Applying a database at compile time.

@pytest.fixture(scope="module")
def statically_checked(tuned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tuned database without its replay timings, as a board's database is: compile
    applies its records after the static checks alone (a 2-trial record may well time slower
    than the default on symbolic shapes)."""
    work_dir = tmp_path_factory.mktemp("static") / "db"
    shutil.copytree(tuned, work_dir)
    (work_dir / REPLAY_FILE).unlink()
    return work_dir


@pytest.fixture(scope="module")
def tuned_and_untuned(model_dir: Path, statically_checked: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The tiny model compiled for the host with the tuned database and without; the IR
    dumps of the tuned build."""
    root = tmp_path_factory.mktemp("deployables")
    build_deployable(model_dir, get_board("host"), root / "tuned", database=statically_checked,
                     dump_dir=root / "ir")
    build_deployable(model_dir, get_board("host"), root / "untuned", untuned=True)
    return root / "tuned", root / "untuned", root / "ir"


def test_compile_applies_the_database_and_names_it(tuned_and_untuned, statically_checked: Path,
                                                   task_name: str):
    deployable, _, _ = tuned_and_untuned
    entry = read_manifest(deployable)["tuning_database"]
    assert entry["path"] == str(statically_checked.resolve())
    assert entry["sha256"] == database_digest(statically_checked)
    assert entry["records"] == TRIALS
    assert task_name in entry["tuned_functions"] and entry["replay_failed"] == []


def test_the_tuned_schedule_replaces_the_default_one(tuned_and_untuned, task_name: str):
    """The tuned function in the dump after the schedule phase is the record's loop nest, not
    the legalized one: marked scheduled and tiled (multi-level tiling splits every loop, while
    parallel, vectorize and unroll are sampled and a 2-trial run may have none of them)."""
    _, _, ir = tuned_and_untuned

    def function(dump: str) -> str:
        text = next(ir.glob(f"*-{dump}.py")).read_text()
        start = text.index(f"def {task_name}(")
        return text[start:text.find("\n    @", start)]

    legalized, scheduled = function("legalize"), function("schedule")
    assert legalized != scheduled
    assert '"tirx.is_scheduled": True' in scheduled
    assert scheduled.count(" for ") > legalized.count(" for ")


def test_tuning_times_the_replay_and_compile_keeps_the_default_when_slower(
        model_dir: Path, tuned: Path, task_name: str, tmp_path: Path):
    """tune times the tuned function on its symbolic shapes against TVM's default; a replay
    timed slower is not used (here the file says so: which one wins with 2 trials is luck)."""
    timings = json.loads((tuned / REPLAY_FILE).read_text())
    (timing,) = [t for t in timings.values() if t["function"] == task_name]
    assert timing["default_us"] > 0 and timing["tuned_us"] > 0
    work_dir = tmp_path / "db"
    shutil.copytree(tuned, work_dir)
    timing["tuned_us"] = 2 * timing["default_us"]
    (work_dir / REPLAY_FILE).write_text(json.dumps(timings))
    build_deployable(model_dir, get_board("host"), tmp_path / "out", database=work_dir)
    entry = read_manifest(tmp_path / "out")["tuning_database"]
    assert task_name in entry["replay_failed"] and task_name not in entry["tuned_functions"]


def test_tuned_and_untuned_libraries_compute_the_same(tuned_and_untuned):
    samples = load_wav(read_data_dir(SAMPLES_DIR)[0].wav)
    tuned_log_probs, _ = CompiledModelRunner(tuned_and_untuned[0]).ctc_log_probs(samples)
    untuned_log_probs, _ = CompiledModelRunner(tuned_and_untuned[1]).ctc_log_probs(samples)
    np.testing.assert_allclose(tuned_log_probs, untuned_log_probs, atol=1e-4)


def test_database_of_another_target_is_refused(model_dir: Path, tuned: Path, tmp_path: Path,
                                               capsys):
    assert main(["compile", str(model_dir), "--target", "x86-64-v3", "--database", str(tuned),
                 "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"{tuned}: tuned for host-" in error and "not for x86-64-v3" in error
    assert error.count("\n") == 1 and not (tmp_path / "out").exists()


def test_missing_or_corrupt_database_builds_untuned_with_a_warning(tuned: Path, tmp_path: Path,
                                                                   capsys):
    assert tuning_database(get_board("host"), tmp_path / "nowhere") is None
    assert f"{tmp_path / 'nowhere' / RECORD_FILE} missing): building untuned" in (
        capsys.readouterr().err)
    work_dir = tmp_path / "db"
    shutil.copytree(tuned, work_dir)
    records = _records(work_dir)
    (work_dir / RECORD_FILE).write_text("\n".join([records[0], "{torn", *records[1:]]) + "\n")
    assert tuning_database(get_board("host"), work_dir) is None
    assert (f"{work_dir / RECORD_FILE}:2: corrupt tuning database: building untuned"
            in capsys.readouterr().err)


def test_a_key_no_board_serves_is_one_line_not_a_hang(board, model_dir: Path, tmp_path: Path,
                                                     capsys, monkeypatch):
    """MetaSchedule's RPC runner waits for a board forever; tune gives up on an empty key."""
    monkeypatch.setattr("tinyasr.schedules.measure.BOARD_WAIT_SEC", 2.0)
    board.start(get_board("rpi4"))   # a tracker with boards, none of them under this key
    start = time.monotonic()
    assert main(["tune", str(model_dir), "--target", "rpi4", "--tracker", board.tracker,
                 "--key", "nobody-serves-this", "--trials", "2",
                 "--work-dir", str(tmp_path)]) == 2
    assert time.monotonic() - start < 60
    error = capsys.readouterr().err
    assert "no board of key 'nobody-serves-this'" in error and error.count("\n") == 1


def test_tuning_on_an_emulated_board_through_the_tracker(board, model_dir: Path, tmp_path: Path):
    """The RPC path: candidates cross-linked here, timed on an (emulated) rpi4 of the tracker
    (a task of the FSMN convolution: on the rpi4's 4-lane vectors the 8-channel convolutions are
    kernels)."""
    board.start(get_board("rpi4"))
    work_dir = tmp_path / "rpi4"
    task = unique_task(model_dir, get_board("rpi4").llvm_target, "conv1d")
    assert main(["tune", str(model_dir), "--target", "rpi4", "--tracker", board.tracker,
                 "--trials", str(TRIALS), "--work-dir", str(work_dir), "--ops", task]) == 0
    database = open_database(work_dir, "rpi4", get_board("rpi4").llvm_target)
    seconds = [float(s) for r in database.get_all_tuning_records() for s in r.run_secs]
    assert len(seconds) == TRIALS and min(seconds) < 1.0   # measured on the board, not failed


def test_kernel_search_on_an_emulated_board_through_the_tracker(board, model_dir: Path,
                                                               tmp_path: Path):
    """The hand-written kernels' points cross-linked here and timed on an (emulated) rpi4:
    its 4-lane fp32 matmul kernel at the default and another register tile."""
    board.start(get_board("rpi4"))
    work_dir = tmp_path / "rpi4"
    tunable = next(t for name, t in sorted(kernel_templates(
        model_dir, get_board("rpi4").llvm_target).items()) if name.startswith("fp32_matmul_4x"))
    assert main(["tune", str(model_dir), "--target", "rpi4", "--tracker", board.tracker,
                 "--trials", str(TRIALS), "--work-dir", str(work_dir), "--ops", tunable.name]) == 0
    records = read_kernel_records(work_dir)
    assert [r.params for r in records] == list(tunable.space[:TRIALS])
    assert all(r.us is not None and 0 < r.us < 1e6 for r in records), records
    assert '"mcpu": "cortex-a72"' in (work_dir / "device.json").read_text()
