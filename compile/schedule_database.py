"""Tuning databases: one directory per device, written by `tinyasr tune`, applied by compile.

    database_workload.json        MetaSchedule's JSONDatabase: the tuned workloads, one per line
    database_tuning_record.json   one line per measured trial (trace + run times)
    device.json                   the device the trials ran on: its name and LLVM target
    symbolic_replays.json         each tuned function's replay on its symbolic shapes timed
                                  against TVM's default schedule (host tuning only)
    kernel_params.json            one line per timed point of a hand-written kernel's space
                                  (compile/kernels/tunable.py): kernel, parameters, run time

`tinyasr compile` refuses a database tuned for another target, warns and builds untuned when the
database is missing or unreadable (saying which file), and names the database and its hash in
the deployable's manifest.

The model's TIR functions have symbolic shapes (frames, n-best batch, decoder steps) and
MetaSchedule measures only static ones, so a function's workload is the function with every
shape variable bound to a typical size for what it counts (`TUNING_EXTENTS`, `static_workload`):
a schedule is tuned at the size it mostly runs at. Tuning and compiling both key records by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.analysis import estimate_tir_flops

from tinyasr.compile.kernels.tunable import KernelTimings
from tinyasr.model.common.atomic import atomic_file, atomic_write_text
from tinyasr.model.common.errors import InputError, warn

# The shipped databases are data of the tinyasr.schedules package, a sibling folder.
SCHEDULES_DIR = Path(__file__).resolve().parent.parent / "schedules"
# Sizes the symbolic shape variables (named by compile.passes.name_shape_vars) take while
# tuning: a 5 s utterance (124 encoder frames, rounded to 128), attention rescoring of its
# 10-best list (a prefix tree of about 180 nodes, rounded to 192); any other variable gets
# DEFAULT_TUNING_EXTENT.
TUNING_EXTENTS = {"frames": 128, "nodes": 192}
DEFAULT_TUNING_EXTENT = 32
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
DEVICE_FILE = "device.json"
REPLAY_FILE = "symbolic_replays.json"   # tuned replays timed against the default (replays.py)
KERNEL_FILE = "kernel_params.json"      # timed parameters of the hand-written kernels
TARGET_KEYS = ("kind", "mtriple", "mcpu", "mattr", "mabi")   # what makes code run the same


def device_name(board_name: str, target: dict[str, Any]) -> str:
    """The database directory name for a board: its name, or for the host its cpu
    (`host-znver5`) and any extensions its target adds to that cpu's
    (`host-rocketlake+amx-int8+amx-tile`, see targets/boards.py host_target): a database tuned
    on one host class says nothing about another."""
    if board_name != "host":
        return board_name
    extensions = sorted(str(feature).lstrip("+") for feature in target.get("mattr", []))
    return f"host-{target.get('mcpu', 'generic')}" + "".join(f"+{e}" for e in extensions)


def default_database_dir(board_name: str, target: dict[str, Any]) -> Path:
    return SCHEDULES_DIR / device_name(board_name, target)


def _target_identity(target: dict[str, Any]) -> dict[str, Any]:
    """The parts of an LLVM target that decide the generated code (not num-cores, not the
    host's long list of detected keys)."""
    identity = {key: target[key] for key in TARGET_KEYS if key in target}
    if "mattr" in identity:
        identity["mattr"] = sorted(identity["mattr"])
    return json.loads(json.dumps(identity, default=list))


def tuning_extent(name: str) -> int:
    """The size a shape variable named `name` takes while tuning."""
    return TUNING_EXTENTS.get(name, DEFAULT_TUNING_EXTENT)


def static_workload(func: tvm.tirx.PrimFunc, extent: Callable[[str], int] = tuning_extent
                    ) -> tvm.IRModule | None:
    """`func` as the static workload MetaSchedule tunes: every symbolic shape variable (scalar
    parameter or buffer dimension) bound to the size `extent` gives its name (by default its
    TUNING_EXTENTS size); None if a shape stays symbolic."""

    def _tuning_extent(var: tvm.tirx.Var) -> tvm.tirx.IntImm:
        return tvm.tirx.IntImm(var.ty.dtype,  # pyright: ignore[reportAttributeAccessIssue]  # a PrimType
                               extent(var.name))

    binding: dict[Any, Any] = {}
    # PrimFunc.params and .specialize are reflected from C++; with_attr returns a BaseFunc
    for param in func.params:  # pyright: ignore[reportAttributeAccessIssue]
        if isinstance(param.ty, tvm.ir.PrimType):
            binding[param] = _tuning_extent(param)
        elif any(isinstance(dim, tvm.tirx.Var) for dim in param.shape):
            shape = [_tuning_extent(dim) if isinstance(dim, tvm.tirx.Var) else dim
                     for dim in param.shape]
            binding[param] = tvm.tirx.decl_buffer(shape, param.dtype, param.name)
    static = func.with_attr("global_symbol", "main").specialize(binding)  # pyright: ignore[reportAttributeAccessIssue]
    try:
        ms.arg_info.ArgInfo.from_prim_func(static)
    except TypeError:   # a shape is still symbolic (an expression of a variable it lost)
        return None
    return tvm.IRModule({"main": static})


def workload_flops(workload: tvm.IRModule) -> float | None:
    """TVM's FLOP estimate of a static workload; None for what it cannot count (the
    hand-written int8 and BSR kernels' vector expressions)."""
    try:
        return estimate_tir_flops(workload)
    except RuntimeError:   # TVM's errors derive from it
        return None


def _records_of(path: Path) -> tuple[list[bytes], list[int]]:
    """A database file's complete lines and the numbers (1-based) of those that are not JSON."""
    lines = path.read_bytes().split(b"\n")
    complete = lines[:-1] if lines[-1] == b"" else lines
    bad = []
    for number, line in enumerate(complete, 1):
        try:
            json.loads(line)
        except ValueError:
            bad.append(number)
    return complete, bad


def repair_database(work_dir: Path) -> list[str]:
    """Drops a torn last line (a write killed midway) from the database files; returns one
    message per repair. A bad line anywhere else is an InputError naming the file and line."""
    repairs = []
    for path in (work_dir / WORKLOAD_FILE, work_dir / RECORD_FILE, work_dir / KERNEL_FILE):
        if not path.exists():
            continue
        lines, bad = _records_of(path)
        if bad and bad[0] < len(lines):
            raise InputError(f"{path}:{bad[0]}: corrupt tuning record")
        if bad:
            with atomic_file(path) as handle:   # a kill now keeps the file as it was
                handle.write(b"".join(line + b"\n" for line in lines[:-1]))
            repairs.append(f"{path}: dropped a torn last line ({bad[0]})")
    return repairs


def check_device(work_dir: Path, device: str, target: dict[str, Any]) -> None:
    """Refuses (InputError) a database whose device.json names another target."""
    path = work_dir / DEVICE_FILE
    if not path.exists():
        return
    try:
        recorded = json.loads(path.read_text())
        recorded_device, recorded_target = recorded["device"], recorded["target"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path}: unreadable (expected the device the database was tuned on)"
                         ) from None
    if recorded_target != _target_identity(target):
        raise InputError(f"{work_dir}: tuned for {recorded_device} "
                         f"({json.dumps(recorded_target)}), not for {device} "
                         f"({json.dumps(_target_identity(target))})")


def open_database(work_dir: Path, device: str, target: dict[str, Any]
                  ) -> ms.database.JSONDatabase:
    """The database in `work_dir` for tuning on `device` (created if missing, repaired after a
    kill, refused if tuned for another target)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    check_device(work_dir, device, target)
    for message in repair_database(work_dir):
        warn(message)
    if not (work_dir / DEVICE_FILE).exists():
        atomic_write_text(work_dir / DEVICE_FILE, json.dumps(
            {"device": device, "target": _target_identity(target)}, indent=2) + "\n")
    return _load(work_dir)


def _load(work_dir: Path) -> ms.database.JSONDatabase:
    try:
        return ms.database.JSONDatabase(str(work_dir / WORKLOAD_FILE),
                                        str(work_dir / RECORD_FILE))
    except Exception as error:   # TVM raises its own error types for unparsable records
        raise InputError(f"{work_dir}: unreadable tuning database ({error})") from None


def structural_key(node: tvm.IRModule | tvm.tirx.PrimFunc | tvm.target.Target) -> str:
    """A node's structural hash, as REPLAY_FILE stores it: the name of a workload, and the
    fingerprint of each function a timing compared and of their target."""
    return str(tvm_ffi.structural_hash(node))


def slower_than_default(work_dir: Path) -> frozenset[str]:
    """Keys of the workloads whose tuned replay measured no faster than TVM's default schedule
    (REPLAY_FILE); empty without the file."""
    path = work_dir / REPLAY_FILE
    if not path.exists():
        return frozenset()
    try:
        timings = json.loads(path.read_text())
        return frozenset(key for key, timing in timings.items()
                         if timing["tuned_us"] >= timing["default_us"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        warn(f"{path}: unreadable: tuned replays are used without their timings")
        return frozenset()


@dataclass
class AppliedDatabase:
    """A database compile applies, and what the manifest says of it."""
    database: ms.database.Database
    path: Path
    sha256: str
    records: int
    slower_than_default: frozenset[str]   # workload keys: keep the default schedule
    kernel_timings: KernelTimings   # hand-written kernel -> its timed parameters


def database_digest(work_dir: Path) -> str:
    """sha256 over the database's files (names and contents)."""
    digest = hashlib.sha256()
    for name in (DEVICE_FILE, WORKLOAD_FILE, RECORD_FILE, REPLAY_FILE, KERNEL_FILE):
        path = work_dir / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def database_for_compile(work_dir: Path, device: str, target: dict[str, Any]
                         ) -> AppliedDatabase | None:
    """The database compile applies for `device`; None, with a warning that says why, when it
    is missing or unreadable (compile then builds untuned). One for another target is refused."""
    if not (work_dir / RECORD_FILE).exists():
        warn(f"no tuning database for {device} ({work_dir / RECORD_FILE} missing): "
              "building untuned")
        return None
    check_device(work_dir, device, target)
    for path in (work_dir / WORKLOAD_FILE, work_dir / RECORD_FILE, work_dir / KERNEL_FILE):
        bad = _records_of(path)[1] if path.exists() else None
        if (bad is None and path.name != KERNEL_FILE) or bad:
            where = f"{path} missing" if bad is None else f"{path}:{bad[0]}"
            warn(f"{where}: corrupt tuning database: building untuned")
            return None
    try:
        database = _load(work_dir)
        kernels = kernel_timings(read_kernel_records(work_dir))
    except InputError as error:
        warn(f"{error}: building untuned")
        return None
    return AppliedDatabase(database, work_dir, database_digest(work_dir),
                           len(database.get_all_tuning_records()),
                           slower_than_default(work_dir), kernels)


@dataclass(frozen=True)
class KernelRecord:
    """One timed point of a hand-written kernel's space; `us` None when it failed to build or
    run (`error` says why)."""
    kernel: str
    params: dict[str, int]
    us: float | None
    error: str | None = None


def read_kernel_records(work_dir: Path) -> list[KernelRecord]:
    """KERNEL_FILE's records (none without the file); InputError naming the file and line of
    a line that is not one."""
    path = work_dir / KERNEL_FILE
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            fields = json.loads(line)
            record = KernelRecord(str(fields["kernel"]),
                                  {str(key): int(value) for key, value in fields["params"].items()},
                                  None if fields["us"] is None else float(fields["us"]),
                                  fields.get("error"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"{path}:{number}: not a kernel parameter record") from None
        records.append(record)
    return records


def append_kernel_records(work_dir: Path, records: list[KernelRecord]) -> None:
    """Appends records to KERNEL_FILE, one JSON line each (a kill loses at most a torn last
    line, which repair_database drops)."""
    with open(work_dir / KERNEL_FILE, "a") as handle:
        for record in records:
            fields = {"kernel": record.kernel, "params": record.params, "us": record.us}
            if record.error is not None:
                fields["error"] = record.error
            handle.write(json.dumps(fields) + "\n")


def kernel_timings(records: list[KernelRecord]) -> KernelTimings:
    """Each kernel's timed parameters with their run times (us)."""
    timings: dict[str, list[tuple[dict[str, int], float]]] = {}
    for record in records:
        if record.us is not None:
            timings.setdefault(record.kernel, []).append((record.params, record.us))
    return timings
