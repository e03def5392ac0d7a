"""A deployable of either family from a model as the command line and the API name it
(`tinyasr compile`, `tinyasr.compile_model`): a SAN-M directory or .tac (deployable.py), a
converted Whisper directory or the name whisper-tiny.en (whisper_deployable.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinyasr.compile.deployable import StaticLinker, build_deployable
from tinyasr.model.common.errors import InputError
from tinyasr.model.decoding.recognizers import whisper_model_dir
from tinyasr.targets.boards import Board


def build_model_deployable(model: str | os.PathLike[str], board: Board, out: Path, *,
                           force: bool = False, dump_dir: Path | None = None,
                           database: Path | None = None, untuned: bool = False,
                           int8: bool = False, static: StaticLinker | None = None,
                           int8_name: str = "int8") -> dict[str, Any]:
    """Compiles `model` for `board` into the deployable `out`; returns its manifest. int8:
    Whisper's post-training int8 weights (a SAN-M model is made int8 before, as a .tac; asked
    of one, the error names the caller's option `int8_name`)."""
    whisper = whisper_model_dir(model)
    if whisper is not None:
        from tinyasr.compile.whisper_deployable import build_whisper_deployable

        return build_whisper_deployable(whisper, board, out, force, dump_dir, database,
                                        untuned, int8, static)
    if int8:
        raise InputError(f"{int8_name}: {model} is a SAN-M model; make it int8 with "
                         "`tinyasr compress quantize`, then compile the .tac")
    return build_deployable(Path(model), board, out, force, dump_dir, database, untuned, static)
