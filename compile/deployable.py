"""A deployable: one directory per board, everything a board needs to transcribe.

    model.so       the compiled VM executable (encode + decode), linked by the board's g++
    weights.bin    every weight the functions take, each distinct (shared) tensor once,
                   in TVM's parameter-dict format (tvm.runtime.load_param_dict / C++ LoadParams),
                   but those model.so computes when loaded (the fbank's tables: a function's
                   manifest entry names its `tables` function and the weights it returns)
    tokens.json    the tokenizer's token list
    manifest.json  target, model hash, versions, byte sizes and sha256 of the three files above,
                   tuning DB used, and how to call each function (runtime inputs, then weight
                   keys in order)
    tinyasr-transcribe   with `static` (compile --static): the board's transcriber with the
                   model's code and the files above linked in, one program to copy; the
                   manifest names it under `static_transcriber` (the copy inside it does not)

Weights live in one adjacent file rather than embedded in the library: the library stays pure
code (the two sizes are reported separately and mean what they say), shared weights cannot be
duplicated by whatever the compiler does to constants, and the same weights file format is what
the board runtime reads without Python. The directory is built in a temp dir beside the
destination and renamed into place, so no half-written deployable ever exists.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import mmap
import shutil
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinyasr.compile.family import FAMILY_NAMES, SAN_M, family_of
from tinyasr.model.common import atomic
from tinyasr.model.common.errors import InputError
from tinyasr.model.network.framing import MIN_FRAMES, SAMPLE_RATE, SAMPLES_PER_FRAME, samples_read
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.network.windows import MAX_FRAMES
from tinyasr.targets.boards import Board, board_target, cpu_features

# Reading and checking a deployable (the runner's part) needs neither torch nor TVM's compiler:
# those are imported by the functions that build one.
if TYPE_CHECKING:
    import tvm

    from tinyasr.compile.pipeline import BuiltModel, ImportedModel, IRDumper, ScheduleReport
    from tinyasr.compile.schedule_database import AppliedDatabase

# Links a static transcriber into a staged deployable: (the model's code as TVM's system
# library, the staging directory with every other file written) -> the manifest's
# `static_transcriber` entry (tinyasr.targets.static_transcriber.StaticLinker; compile cannot
# import the board runtime's build, which sits above it).
StaticLinker = Callable[["tvm.runtime.Executable", Path], dict[str, Any]]

LIBRARY_FILE = "model.so"
WEIGHTS_FILE = "weights.bin"
TOKENS_FILE = "tokens.json"
MANIFEST_FILE = "manifest.json"
FORMAT = "tinyasr-deployable"
# 2: decode takes the hypotheses' prefix tree (1: a padded batch); 3: Whisper's step writes its
# self-attention caches in place (a runner may keep passing the tensors it made); 4: SAN-M's
# memory is planned for audio.max_frames encoder frames, which encode checks; 5: weights a
# function's `tables` function computes at load are not in weights.bin
VERSION = 5
# How encode frames its input; max_frames: its memory is planned for at most that many frames
# (a 30 s window's, model/network/windows.py), and encode refuses more.
AUDIO = {"sample_rate": SAMPLE_RATE, "samples_per_frame": SAMPLES_PER_FRAME,
         "samples_for_zero_frames": samples_read(0), "min_frames": MIN_FRAMES,
         "max_frames": MAX_FRAMES}
STRIP = ["-s"]   # LLVM's debug info is half the library; the VM needs only dynamic symbols


def model_hash(model: Path) -> str:
    """sha256 of a compressed model file, or over a model directory's files (names and
    contents, in name order)."""
    model = Path(model)
    if model.is_file():
        return hashlib.sha256(model.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for path in sorted(p for p in model.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """A temp dir beside `out` that replaces `out` when the block succeeds (else vanishes):
    the old deployable is renamed aside before the new one is renamed in, and a killed
    compile's leftovers are cleaned up by the next (tinyasr.model.common.atomic)."""
    with atomic.staged_directory(out) as staging:
        yield staging


def tuning_database(board: Board, database: Path | None = None) -> AppliedDatabase | None:
    """The tuning database compile applies for `board`: `database`, else the shipped one for the
    device (schedules/<device>/); None (with a warning saying why) when missing or corrupt."""
    from tinyasr.compile.schedule_database import (
        database_for_compile,
        default_database_dir,
        device_name,
    )

    target = board_target(board)
    return database_for_compile(Path(database or default_database_dir(board.name, target)),
                                device_name(board.name, target), target)


def build_deployable(model_dir: Path, board: Board, out: Path, force: bool = False,
                     dump_dir: Path | None = None, database: Path | None = None,
                     untuned: bool = False, static: StaticLinker | None = None
                     ) -> dict[str, Any]:
    """Compiles a model (directory or .tac file) for `board` into the deployable `out`, with the
    schedules of its tuning database (`tuning_database`) unless `untuned`, and with a static
    transcriber linked by `static` when given; returns its manifest.

    Every check on user input (output path, cross compiler, model, database) runs before the
    build."""
    from tinyasr.compile.compressed_import import load_for_compile
    from tinyasr.compile.pipeline import IRDumper, import_model

    out = Path(out)
    atomic.clean_directory_leftovers(out)   # a killed --force run's old deployable is put back
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to replace it)")
    board.require_cross_compiler()
    model, tokenizer = load_for_compile(model_dir)
    applied = None if untuned else tuning_database(board, database)
    dump = IRDumper(dump_dir)
    return write_deployable(import_model(model, dump), board, out, model_dir, tokenizer, dump,
                            applied, static)


def write_deployable(imported: ImportedModel, board: Board, out: Path, model_dir: Path,
                     tokenizer: Tokenizer, dump: IRDumper | None = None,
                     database: AppliedDatabase | None = None,
                     static: StaticLinker | None = None) -> dict[str, Any]:
    """Builds an imported model for `board` and writes the deployable `out` (replacing it)."""

    from tinyasr.compile.pipeline import IRDumper, build

    target = board_target(board)
    built = build(imported, target, dump or IRDumper(None), database, static is not None)
    with staged_directory(Path(out)) as staging:
        write_code_and_weights(built, board, staging)
        tokenizer.save(staging / TOKENS_FILE)
        manifest = _manifest(built, board, target, model_dir, staging, tokenizer.sos_eos,
                             _history_width(imported))
        write_manifest(staging, manifest, built, static)
    return manifest


def write_manifest(staging: Path, manifest: dict[str, Any], built: BuiltModel,
                   static: StaticLinker | None) -> None:
    """manifest.json into `staging`; with `static`, then the static transcriber, which links
    that manifest in, and the manifest again, naming it (under `static_transcriber`)."""
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if static is None:
        return
    assert built.system_library is not None
    manifest["static_transcriber"] = static(built.system_library, staging)
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def write_code_and_weights(built: BuiltModel, board: Board, staging: Path) -> None:
    """model.so linked by the board's compiler (stripped) and weights.bin, into `staging`."""
    import tvm
    from tvm.support import cc

    # the object files and the compiler's temp files go to a dir inside the staging, not the
    # system temp dir, where a killed compile would leave them (a killed staging is deleted)
    objects = staging / ".objects"
    objects.mkdir()
    with atomic.temp_files_in(objects):
        built.executable.export_library(
            str(staging / LIBRARY_FILE),
            fcompile=cc.cross_compiler(board.require_cross_compiler(),
                                       options=[*board.link_flags, *STRIP]),
            workspace_dir=str(objects))
    shutil.rmtree(objects)
    computed = {key for signature in built.signatures.values() if signature.tables
                for key in signature.tables[1]}
    tvm.runtime.save_param_dict_to_file(
        {key: value for key, value in built.weights.items() if key not in computed},
        str(staging / WEIGHTS_FILE))


def function_entries(built: BuiltModel) -> dict[str, dict[str, Any]]:
    """The manifest's `functions`: per VM function its runtime inputs and weight keys, and the
    function computing some of those weights at load with their keys (`tables`), if any."""
    entries = {}
    for name, signature in built.signatures.items():
        entries[name] = {"inputs": signature.inputs, "weights": signature.weights}
        if signature.tables:
            function, keys = signature.tables
            entries[name]["tables"] = {"function": function, "weights": keys}
    return entries


def _history_width(imported: ImportedModel) -> int:
    """K of the decode function's (nodes, K) history input: the rows each tree node's FSMN
    reads (model/decoding/prefix_tree.py), which its caller builds."""
    decode = imported.mod["decode"]
    history = next(param for param in decode.params if param.name == "history")
    return int(history.ty.shape.values[1])


def _manifest(built: BuiltModel, board: Board, target: dict[str, Any], model_dir: Path,
              staging: Path, sos_eos: int, history_width: int) -> dict[str, Any]:
    return {
        **common_manifest(SAN_M, built, board, target, model_dir, staging,
                          (LIBRARY_FILE, WEIGHTS_FILE, TOKENS_FILE)),
        "audio": AUDIO,
        "sos_eos": sos_eos,
        "decoder_history": history_width,
        "functions": function_entries(built),
    }


def common_manifest(family: str, built: BuiltModel, board: Board, target: dict[str, Any],
                    model_dir: Path, staging: Path, files: tuple[str, ...]) -> dict[str, Any]:
    """What every family's manifest says: its format and family; the board, its LLVM target and
    the CPU features and AMX tiles its code needs; the model it was compiled from and the
    versions that compiled it; its code and weights' sizes, the digests of `files` (in
    `staging`), and the tuning database applied."""
    import torch
    import tvm

    return {
        "format": FORMAT,
        "version": VERSION,
        "family": family,
        "target": board.name,
        "arch": board.arch,
        "llvm_target": json.loads(json.dumps(target, default=list)),
        "cpu_features": cpu_features(target),
        "amx_tiles": built.schedules is not None and built.schedules.amx_tiles,
        "model": {"path": str(Path(model_dir).resolve()), "sha256": model_hash(model_dir)},
        "versions": {"tinyasr": importlib.metadata.version("tinyasr"),
                     "tvm": tvm.__version__, "torch": torch.__version__},
        "bytes": {"code": (staging / LIBRARY_FILE).stat().st_size,
                  "weights": (staging / WEIGHTS_FILE).stat().st_size},
        "sha256": {name: file_sha256(staging / name) for name in files},
        "tuning_database": _database_entry(built.schedules),
    }


def _database_entry(schedules: ScheduleReport | None) -> dict[str, Any] | None:
    if schedules is None:
        return None
    database = schedules.database
    return {"path": str(database.path.resolve()), "sha256": database.sha256,
            "records": database.records, "tuned_functions": sorted(schedules.applied),
            "replay_failed": sorted(schedules.failed),
            "tuned_kernels": dict(sorted(schedules.kernels.items()))}


def read_manifest(deployable: Path) -> dict[str, Any]:
    """The manifest of a SAN-M deployable directory, or a one-line error saying what is wrong."""
    return read_family_manifest(deployable, SAN_M, _san_m_problem)


def read_family_manifest(deployable: Path, family: str,
                         family_problem: Callable[[dict[str, Any]], str | None]
                         ) -> dict[str, Any]:
    """The manifest of a deployable of `family`, its format, family and version checked, then
    the fields every family has and `family_problem`'s own; each problem one InputError."""
    path = Path(deployable) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{deployable}: not a tinyasr deployable (no readable {MANIFEST_FILE})"
                         ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a tinyasr deployable manifest")
    if family_of(manifest) != family:
        raise InputError(f"{deployable}: a {family_of(manifest)} deployable, not "
                         f"{FAMILY_NAMES[family]}")
    if manifest.get("version") != VERSION:
        raise InputError(f"{path}: deployable version {manifest.get('version')}, this tinyasr "
                         f"reads version {VERSION}: compile it again")
    problem = _common_problem(manifest) or family_problem(manifest)
    if problem:
        raise InputError(f"{path}: corrupt deployable manifest ({problem})")
    return manifest


MAX_HISTORY = 1024   # decoder_history: the FSMN kernel width, a few tens in practice


def _common_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the fields every family's manifest has, or None."""
    for key in ("target", "arch"):
        if not isinstance(manifest.get(key), str):
            return f"{key} must be a string"
    functions = manifest.get("functions")
    if not isinstance(functions, dict):
        return "functions must be an object"
    for name, function in functions.items():
        if (not isinstance(function, dict)
                or not all(isinstance(function.get(key), list)
                           and all(isinstance(item, str) for item in function[key])
                           for key in ("inputs", "weights"))):
            return f"functions.{name} needs lists of strings 'inputs' and 'weights'"
        tables = function.get("tables")
        if tables is not None and not (
                isinstance(tables, dict) and isinstance(tables.get("function"), str)
                and isinstance(tables.get("weights"), list)
                and all(isinstance(key, str) and key in function["weights"]
                        for key in tables["weights"])):
            return (f"functions.{name}.tables needs a string 'function' and a list 'weights' "
                    f"of the function's weight keys")
    for key, kind, what in (("bytes", int, "byte counts"), ("sha256", str, "hex digests")):
        if key not in manifest:
            continue
        if not isinstance(manifest[key], dict):
            return f"{key} must be an object"
        if not all(isinstance(value, kind) and not isinstance(value, bool)
                   for value in manifest[key].values()):
            return f"{key} must map file names to {what}"
    features = manifest.get("cpu_features", [])
    if not (isinstance(features, list) and all(isinstance(item, str) for item in features)):
        return "cpu_features must be a list of strings"
    if not isinstance(manifest.get("amx_tiles", False), bool):
        return "amx_tiles must be true or false"
    llvm_target = manifest.get("llvm_target", {})
    if not isinstance(llvm_target, dict) or not (
            isinstance(llvm_target.get("mattr", []), list)
            and all(isinstance(item, str) for item in llvm_target.get("mattr", []))):
        return "llvm_target must be an object whose mattr is a list of strings"
    return None


def source_model(deployable: Path, manifest: dict[str, Any]) -> Path:
    """The model a deployable was compiled from (model.path: the reference rpc-test compares
    against), checked to be there."""
    model = manifest.get("model")
    path = model.get("path") if isinstance(model, dict) else None
    if not isinstance(path, str):
        raise InputError(f"{Path(deployable) / MANIFEST_FILE}: no model.path (the model it was "
                         "compiled from)")
    if not Path(path).exists():
        raise InputError(f"{Path(deployable) / MANIFEST_FILE}: the model it was compiled from, "
                         f"{path}, is gone")
    return Path(path)


def _san_m_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a version-2 SAN-M manifest's own fields, or None."""
    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for key in ("sos_eos", "decoder_history"):
        if not is_int(manifest.get(key)) or manifest[key] < 1:
            return f"{key} must be an integer >= 1, not {manifest.get(key)!r}"
    if manifest["decoder_history"] > MAX_HISTORY:
        return f"decoder_history {manifest['decoder_history']} is over {MAX_HISTORY}"
    audio = manifest.get("audio")
    if audio != AUDIO:
        return f"audio framing {audio!r}, this tinyasr's front end has {AUDIO}"
    if set(manifest["functions"]) != {"encode", "decode"}:
        return "functions must be encode and decode"
    return None


def check_deployable_files(deployable: Path, manifest: dict[str, Any],
                           files: Sequence[str] = (LIBRARY_FILE, WEIGHTS_FILE, TOKENS_FILE)
                           ) -> None:
    """The `files` of a deployable against its manifest, before any is loaded: sizes and (in
    deployables that record them) sha256 sums, the weights file's structure (every count and
    size within the file: TVM's loader trusts them) and every weight a function takes in it.
    Each problem is an InputError naming the file."""
    deployable = Path(deployable)
    for name in files:
        if not (deployable / name).is_file():
            raise InputError(f"{deployable / name}: missing (compile the deployable again)")
    sizes = {LIBRARY_FILE: manifest.get("bytes", {}).get("code"),
             WEIGHTS_FILE: manifest.get("bytes", {}).get("weights")}
    for name, expected in sizes.items():
        actual = (deployable / name).stat().st_size
        if expected is not None and actual != expected:
            raise InputError(f"{deployable / name}: {actual} bytes, the manifest says "
                             f"{expected} (truncated or replaced?)")
    for name, expected in manifest.get("sha256", {}).items():
        if name in files and file_sha256(deployable / name) != expected:
            raise InputError(f"{deployable / name}: sha256 differs from the manifest's "
                             "(changed after compiling)")
    stored = read_weights_index(deployable / WEIGHTS_FILE)
    for function_name, function in manifest["functions"].items():
        computed = computed_weights(function)
        missing = [key for key in function["weights"] if key not in stored and key not in computed]
        if missing:
            raise InputError(f"{deployable / WEIGHTS_FILE}: no weight {missing[0]!r} "
                             f"({function_name} takes {len(missing)} not in the file)")


def computed_weights(function: dict[str, Any]) -> list[str]:
    """The keys of a manifest function's weights its `tables` function computes at load."""
    tables = function.get("tables")
    return list(tables["weights"]) if tables else []


_PARAMS_MAGIC = 0xF7E58D4F05049CB7    # TVM's parameter-dict (tensor list) magic
_TENSOR_MAGIC = 0xDD5E40F096B4A13F    # and each tensor's
_TENSOR_HEADER = struct.Struct("<QQiiiBBH")   # magic, reserved, device type and id, ndim, dtype
_DTYPE_CODES = {0: "int", 1: "uint", 2: "float"}
_CPU = 1                              # DLPack's kDLCPU: weights are saved from the host
MAX_NDIM = 8


def read_weights_index(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype, shape) of every tensor in a TVM parameter-dict file, each count, length
    and size checked against what is left of the file; anything else is an InputError naming
    the file (TVM's own loader allocates whatever the file says). The file is mapped, not
    read: only its headers' pages are touched (a Whisper deployable's 42 MB cost 20 ms to read)."""
    with open(path, "rb") as handle:
        if handle.seek(0, 2) == 0:
            raise InputError(f"{path}: empty weights file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _weights_index(path, data)


def _weights_index(path: Path, data: mmap.mmap) -> dict[str, tuple[str, tuple[int, ...]]]:
    position = 0

    def skip(size: int, what: str) -> None:
        nonlocal position
        if size < 0 or size > len(data) - position:
            raise InputError(f"{path}: corrupt weights file ({what} runs past the end of the "
                             f"file at byte {position})")
        position += size

    def take(size: int, what: str) -> bytes:
        skip(size, what)
        return data[position - size:position]

    def number(fmt: str, what: str) -> int:
        return struct.unpack(fmt, take(struct.calcsize(fmt), what))[0]

    if number("<Q", "header") != _PARAMS_MAGIC:
        raise InputError(f"{path}: not a TVM weights file (bad magic)")
    number("<Q", "header")
    names = []
    for i in range(number("<Q", "name count")):
        if i >= len(data) // 8:
            raise InputError(f"{path}: corrupt weights file (more names than the file can hold)")
        raw = take(number("<Q", "name length"), f"name {i}")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{path}: corrupt weights file (name {i} is not UTF-8)") from None
    if number("<Q", "tensor count") != len(names) or len(set(names)) != len(names):
        raise InputError(f"{path}: corrupt weights file (names and tensors do not pair up)")
    index: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name in names:
        magic, _, device_type, _, ndim, code, bits, lanes = _TENSOR_HEADER.unpack(
            take(_TENSOR_HEADER.size, f"tensor {name!r}"))
        if (magic != _TENSOR_MAGIC or device_type != _CPU or not 0 <= ndim <= MAX_NDIM
                or code not in _DTYPE_CODES or bits not in (8, 16, 32, 64)
                or (code == 2 and bits == 8) or lanes != 1):
            raise InputError(f"{path}: corrupt weights file (tensor {name!r} has a bad header)")
        shape = struct.unpack(f"<{ndim}q", take(8 * ndim, f"tensor {name!r} shape"))
        nbytes = number("<q", f"tensor {name!r} size")
        if min(shape, default=0) < 0 or nbytes != math.prod(shape) * bits // 8:
            raise InputError(f"{path}: corrupt weights file (tensor {name!r}: shape "
                             f"{list(shape)} and {nbytes} bytes disagree)")
        skip(nbytes, f"tensor {name!r}")
        index[name] = (f"{_DTYPE_CODES[code]}{bits}", shape)
    if position != len(data):
        raise InputError(f"{path}: corrupt weights file ({len(data) - position} bytes after "
                         "the last tensor)")
    return index
