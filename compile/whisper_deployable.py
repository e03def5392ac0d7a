"""A Whisper deployable: `tinyasr compile whisper-tiny.en --target host --out DIR`.

The same directory layout and compiler phases as a SAN-M deployable (deployable.py,
pipeline.py), with Whisper's three functions (whisper_graphs.py: log_mel, encode, step):

    model.so        the VM executable
    weights.bin     every weight each function takes, each stored once (the tied token
                    embedding once: the step's gather and its logits read the same tensor)
    vocabulary.txt, merges.txt   the tokenizer (model/whisper/tokenizer.py)
    manifest.json   "family": "whisper", target, hashes and sizes, how to call each function,
                    and what the decoder and the front end need (whisper_manifest.py)

whisper_manifest.py reads and checks one before TVM reads it, without torch or TVM's compiler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import tvm
from tvm.target import codegen

from tinyasr.compile.deployable import (
    LIBRARY_FILE,
    WEIGHTS_FILE,
    StaticLinker,
    common_manifest,
    function_entries,
    staged_directory,
    tuning_database,
    write_code_and_weights,
    write_manifest,
)
from tinyasr.compile.family import WHISPER
from tinyasr.compile.pipeline import BuiltModel, ImportedModel, IRDumper, build, import_exported
from tinyasr.compile.whisper_graphs import SHAPE_VARIABLES, export_graphs
from tinyasr.compile.whisper_manifest import TOKENIZER_FILES, audio_layout, cache_names, stop_rules
from tinyasr.model.common.errors import InputError
from tinyasr.model.whisper.convert import load_whisper_dir
from tinyasr.model.whisper.model import Whisper
from tinyasr.model.whisper.tokenizer import WhisperTokenizer
from tinyasr.targets.boards import Board, board_target


def shape_roles(layers: int) -> dict[str, dict[tuple[str, int], str]]:
    """SHAPE_VARIABLES with every self-attention cache's batch axis named too."""
    roles = {name: dict(axes) for name, axes in SHAPE_VARIABLES.items()}
    for i in range(layers):
        roles["step"][(f"caches_{i}", 0)] = "batch"
    return roles


def half_cross_caches(target: dict[str, Any]) -> bool:
    """Whether the target widens float16 in vector registers: x86 with F16C, or AArch64."""
    target_object = tvm.target.Target(target)
    mtriple = str(target.get("mtriple", ""))
    with target_object:
        return codegen.target_has_features("f16c") or mtriple.startswith("aarch64")


def import_whisper(model: Whisper, dump: IRDumper, int8: bool = False,
                   half_cross: bool = False) -> ImportedModel:
    """Phase import: the three graphs as one Relax module, weights kept as inputs; `int8`:
    the encoder's attention on int8 dot products too; `half_cross`: the cross-attention caches
    as float16 (whisper_graphs.py)."""
    cross_dtype = torch.float16 if half_cross else torch.float32
    mod, weights = import_exported(export_graphs(model, cross_dtype),
                                   shape_roles(model.dims.n_text_layers))
    dump("import", mod)
    return ImportedModel(mod, weights, int8_attention=int8)


def import_whisper_dir(model_dir: Path, target: dict[str, Any], dump: IRDumper, int8: bool
                       ) -> tuple[ImportedModel, tuple[Whisper, WhisperTokenizer, dict]]:
    """Phase import of a converted Whisper dir as compiled for `target` (what compile builds
    and tune tunes), and the dir's model, tokenizer and config; `int8`: per-output-channel
    int8 weights for the linear layers and the tied token embedding (whisper_int8.py), and
    float16 cross-attention caches where the target widens float16 in registers."""
    model, tokenizer, config = load_whisper_dir(model_dir)
    if int8:
        from tinyasr.compile.whisper_int8 import quantize_whisper

        model = quantize_whisper(model)
    imported = import_whisper(model, dump, int8, half_cross=int8 and half_cross_caches(target))
    return imported, (model, tokenizer, config)


def build_whisper_deployable(model_dir: Path, board: Board, out: Path, force: bool = False,
                             dump_dir: Path | None = None, database: Path | None = None,
                             untuned: bool = False, int8: bool = False,
                             static: StaticLinker | None = None) -> dict[str, Any]:
    """Compiles a converted Whisper model dir for `board` into the deployable `out`; `int8`:
    see import_whisper_dir; `static`: with a static transcriber (deployable.py)."""
    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to replace it)")
    board.require_cross_compiler()
    applied = None if untuned else tuning_database(board, database)
    dump = IRDumper(dump_dir)
    target = board_target(board)
    imported, (model, tokenizer, config) = import_whisper_dir(model_dir, target, dump, int8)
    built = build(imported, target, dump, applied, static is not None)
    return write_whisper_deployable(built, board, out, model_dir, model, tokenizer, config,
                                    int8, static)


def write_whisper_deployable(built: BuiltModel, board: Board, out: Path, model_dir: Path,
                             model: Whisper, tokenizer: WhisperTokenizer, config: dict,
                             int8: bool = False, static: StaticLinker | None = None
                             ) -> dict[str, Any]:
    with staged_directory(Path(out)) as staging:
        write_code_and_weights(built, board, staging)
        tokenizer.save(staging)
        manifest = _manifest(built, board, model_dir, staging, model, tokenizer, config, int8)
        write_manifest(staging, manifest, built, static)
    return manifest


def _manifest(built: BuiltModel, board: Board, model_dir: Path, staging: Path, model: Whisper,
              tokenizer: WhisperTokenizer, config: dict, int8: bool) -> dict[str, Any]:
    specials, target = tokenizer.specials, board_target(board)
    files = (LIBRARY_FILE, WEIGHTS_FILE, *TOKENIZER_FILES)
    return {
        **common_manifest(WHISPER, built, board, target, model_dir, staging, files),
        "name": config.get("name", Path(model_dir).name),
        "weights_encoding": "int8" if int8 else "fp32",
        "dims": model.dims.to_dict(),
        "decoder": {"sot_sequence": [specials.sot, specials.no_timestamps],
                    "eot": specials.eot, "no_speech": specials.no_speech,
                    "timestamp_begin": specials.timestamp_begin,
                    "suppress_ids": list(config["suppress_ids"]),
                    "suppress_ids_begin": list(config["suppress_ids_begin"]),
                    "n_ctx": model.dims.n_text_ctx,
                    **stop_rules(model.dims),
                    "caches": cache_names(model.dims.n_text_layers)},
        "audio": audio_layout(model.dims),
        "functions": function_entries(built),
    }
