"""The Python API behind `import tinyasr`: what the command line does, as calls.

Models are named as on the command line: a SAN-M model directory, a compressed `.tac` file, a
Whisper directory or the name `whisper-tiny.en`; None is the shipped model. Audio is a wav path
(16 kHz mono 16-bit) or int16-scale float32 samples at 16 kHz (`load_wav` reads one). Bad
input raises `tinyasr.InputError`, whose message names the file or argument.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union, runtime_checkable

from tinyasr.model.decoding.options import DecodeMode, DecodeOptions

if TYPE_CHECKING:
    import numpy as np

ModelRef = Union[str, "os.PathLike[str]", None]
Audio = Union[str, "os.PathLike[str]", "np.ndarray"]


@runtime_checkable
class Recognizer(Protocol):
    """What `load_recognizer` and `load_deployable` return: a model ready to transcribe."""

    def transcribe(self, samples: np.ndarray) -> str:
        """Text of int16-scale 16 kHz mono samples (float32)."""
        ...


def _options(mode: str | DecodeMode, beam: int) -> DecodeOptions:
    from tinyasr.model.common.errors import InputError

    try:
        mode = DecodeMode(mode)
    except ValueError:
        raise InputError(f"mode {mode!r}: not one of "
                         f"{', '.join(m.value for m in DecodeMode)}") from None
    _check_beam("beam", beam)
    return DecodeOptions(mode, beam)


def _check_beam(name: str, beam: int) -> int:
    from tinyasr.model.common.errors import InputError

    if beam < 1:
        raise InputError(f"{name}: must be at least 1, got {beam}")
    return beam


def load_recognizer(model: ModelRef = None, *, mode: str | DecodeMode = "attention_rescoring",
                    beam: int = 10, whisper_beam: int = 1) -> Recognizer:
    """A recognizer for `model` on this machine's CPU (PyTorch).

    mode, beam: the SAN-M model's decoding (ctc_greedy, ctc_prefix_beam or attention_rescoring
    of the CTC `beam`-best). whisper_beam: Whisper's beam, 1 for greedy search."""
    from tinyasr.model.decoding.recognizers import load_recognizer as load
    from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL

    return load(DEFAULT_MODEL if model is None else model, _options(mode, beam),
                _check_beam("whisper_beam", whisper_beam))


def load_deployable(path: str | os.PathLike[str], *,
                    mode: str | DecodeMode = "attention_rescoring", beam: int = 10,
                    whisper_beam: int = 1) -> Recognizer:
    """A deployable compiled for this machine (`compile_model(..., "host", ...)`) of either
    family (its manifest says which), run by TVM's runtime; it decodes as `load_recognizer`
    does: mode and beam are SAN-M's, whisper_beam Whisper's."""
    from tinyasr.compile.family import WHISPER, deployable_family

    options, whisper_beam = _options(mode, beam), _check_beam("whisper_beam", whisper_beam)
    if deployable_family(Path(path)) == WHISPER:
        from tinyasr.targets.host.whisper_runner import load_compiled_whisper

        return load_compiled_whisper(Path(path), beam=whisper_beam)
    from tinyasr.targets.host.runner import CompiledRecognizer

    return CompiledRecognizer.load(Path(path), options)


def transcribe(audio: Audio, model: Recognizer | ModelRef = None) -> str:
    """The text of one utterance: a wav path or samples; `model` a recognizer from
    `load_recognizer`/`load_deployable`, or what `load_recognizer` takes (loaded for this
    call: keep a recognizer to transcribe many)."""
    from tinyasr.model.data.datadir import load_wav

    recognizer = model if isinstance(model, Recognizer) else load_recognizer(model)
    if isinstance(audio, (str, os.PathLike)):
        audio = load_wav(audio)
    return recognizer.transcribe(audio)


def compile_model(model: ModelRef, target: str, out: str | os.PathLike[str], *,
                  force: bool = False, database: str | os.PathLike[str] | None = None,
                  untuned: bool = False, static: bool = False, int8: bool = False) -> Path:
    """Compiles a model (a SAN-M directory or .tac, a Whisper directory or `whisper-tiny.en`;
    None: the shipped SAN-M) for the board named `target` (see `boards()`; "host" is this
    machine) into the deployable directory `out`, as `tinyasr compile` does; returns `out`.
    Its manifest.json records sizes and the tuning used.

    force: replace an existing `out`. database: a tuning database (default: the device's own
    under schedules/). untuned: TVM's default schedules. static: also link
    `out/tinyasr-transcribe`, the board's transcriber with everything in it (compile --static).
    int8: Whisper's int8 weights (a SAN-M model is made int8 as a .tac)."""
    from tinyasr.compile.build import build_model_deployable
    from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL
    from tinyasr.targets.boards import get_board
    from tinyasr.targets.static_transcriber import static_linker

    out, board = Path(out), get_board(target)
    build_model_deployable(DEFAULT_MODEL if model is None else model, board, out, force=force,
                           database=None if database is None else Path(database),
                           untuned=untuned, int8=int8,
                           static=static_linker(board) if static else None)
    return out


def export_onnx(model: ModelRef, out: str | os.PathLike[str]) -> list[Path]:
    """Writes a SAN-M model's encode.onnx and decode.onnx into the directory `out`, as
    `tinyasr export onnx` does (see tinyasr.compile.onnx_export); returns their paths."""
    from tinyasr.compile.onnx_export import export_onnx as export
    from tinyasr.model.decoding.recognizer import Recognizer as SanmRecognizer
    from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL

    return export(SanmRecognizer.load(Path(DEFAULT_MODEL if model is None else model)).model,
                  Path(out))


def boards() -> list[str]:
    """The names `compile_model` takes as `target`."""
    from tinyasr.targets.boards import BOARDS

    return list(BOARDS)
