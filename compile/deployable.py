"""A deployable: one directory per board, everything a board needs to transcribe.

    model.so       the compiled VM executable (encode + decode), linked by the board's g++
    weights.bin    every weight the functions take, each distinct (shared) tensor once,
                   in TVM's parameter-dict format (tvm.runtime.load_param_dict / C++ LoadParams)
    tokens.json    the tokenizer's token list
    manifest.json  target, model hash, versions, byte sizes of code and weights, tuning DB used,
                   and how to call each function (runtime inputs, then weight keys in order)

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
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import tvm
from tvm.support import cc

from tinyasr.compile.compressed_import import load_for_compile
from tinyasr.compile.graphs import MIN_FRAMES, SAMPLES_PER_FRAME, samples_read
from tinyasr.compile.pipeline import (BuiltModel, ImportedModel, IRDumper, ScheduleReport, build,
                                      import_model)
from tinyasr.model.errors import InputError
from tinyasr.model.frontend import SAMPLE_RATE
from tinyasr.model.tokenizer import Tokenizer
from tinyasr.schedules.database import (AppliedDatabase, database_for_compile,
                                        default_database_dir, device_name)
from tinyasr.targets.boards import Board, board_target

LIBRARY_FILE = "model.so"
WEIGHTS_FILE = "weights.bin"
TOKENS_FILE = "tokens.json"
MANIFEST_FILE = "manifest.json"
FORMAT = "tinyasr-deployable"
VERSION = 2   # 2: decode takes the hypotheses' prefix tree (1: a padded batch)
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


@contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """A temp dir beside `out` that replaces `out` when the block succeeds (else vanishes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def tuning_database(board: Board, database: Path | None = None) -> AppliedDatabase | None:
    """The tuning database compile applies for `board`: `database`, else the shipped one for the
    device (schedules/<device>/); None (with a warning saying why) when missing or corrupt."""
    target = board_target(board)
    return database_for_compile(Path(database or default_database_dir(board.name, target)),
                                device_name(board.name, target), target)


def build_deployable(model_dir: Path, board: Board, out: Path, force: bool = False,
                     dump_dir: Path | None = None, database: Path | None = None,
                     untuned: bool = False) -> dict[str, Any]:
    """Compiles a model (directory or .tac file) for `board` into the deployable `out`, with the
    schedules of its tuning database (`tuning_database`) unless `untuned`; returns its manifest.

    Every check on user input (output path, cross compiler, model, database) runs before the
    build."""
    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to replace it)")
    board.require_cross_compiler()
    model, tokenizer = load_for_compile(model_dir)
    applied = None if untuned else tuning_database(board, database)
    dump = IRDumper(dump_dir)
    return write_deployable(import_model(model, dump), board, out, model_dir, tokenizer, dump,
                            applied)


def write_deployable(imported: ImportedModel, board: Board, out: Path, model_dir: Path,
                     tokenizer: Tokenizer, dump: IRDumper | None = None,
                     database: AppliedDatabase | None = None) -> dict[str, Any]:
    """Builds an imported model for `board` and writes the deployable `out` (replacing it)."""
    target = board_target(board)
    built = build(imported, target, dump or IRDumper(None), database)
    with staged_directory(Path(out)) as staging:
        built.executable.export_library(
            str(staging / LIBRARY_FILE),
            fcompile=cc.cross_compiler(board.require_cross_compiler(),
                                       options=[*board.link_flags, *STRIP]))
        tvm.runtime.save_param_dict_to_file(built.weights, str(staging / WEIGHTS_FILE))
        tokenizer.save(staging / TOKENS_FILE)
        manifest = _manifest(built, board, target, model_dir, staging, tokenizer.sos_eos,
                             _history_width(imported))
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _history_width(imported: ImportedModel) -> int:
    """K of the decode function's (nodes, K) history input: the rows each tree node's FSMN
    reads (model/prefix_tree.py), which its caller builds."""
    decode = imported.mod["decode"]
    history = next(param for param in decode.params if param.name == "history")
    return int(history.ty.shape.values[1])


def _manifest(built: BuiltModel, board: Board, target: dict[str, Any], model_dir: Path,
              staging: Path, sos_eos: int, history_width: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "target": board.name,
        "arch": board.arch,
        "llvm_target": json.loads(json.dumps(target, default=list)),
        "model": {"path": str(Path(model_dir).resolve()), "sha256": model_hash(model_dir)},
        "versions": {"tinyasr": importlib.metadata.version("tinyasr"),
                     "tvm": tvm.__version__, "torch": torch.__version__},
        "bytes": {"code": (staging / LIBRARY_FILE).stat().st_size,
                  "weights": (staging / WEIGHTS_FILE).stat().st_size},
        "tuning_database": _database_entry(built.schedules),
        "audio": {"sample_rate": SAMPLE_RATE, "samples_per_frame": SAMPLES_PER_FRAME,
                  "samples_for_zero_frames": samples_read(0), "min_frames": MIN_FRAMES},
        "sos_eos": sos_eos,
        "decoder_history": history_width,
        "functions": {name: {"inputs": signature.inputs, "weights": signature.weights}
                      for name, signature in built.signatures.items()},
    }


def _database_entry(schedules: ScheduleReport | None) -> dict[str, Any] | None:
    if schedules is None:
        return None
    database = schedules.database
    return {"path": str(database.path.resolve()), "sha256": database.sha256,
            "records": database.records, "tuned_functions": sorted(schedules.applied),
            "replay_failed": sorted(schedules.failed)}


def read_manifest(deployable: Path) -> dict[str, Any]:
    """The manifest of a deployable directory, or a one-line error saying what is wrong."""
    path = Path(deployable) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{deployable}: not a tinyasr deployable (no readable {MANIFEST_FILE})"
                         ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a tinyasr deployable manifest")
    if manifest.get("version") != VERSION:
        raise InputError(f"{path}: deployable version {manifest.get('version')}, this tinyasr "
                         f"reads version {VERSION}: compile it again")
    return manifest
