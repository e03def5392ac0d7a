"""tinyasr: on-device speech recognition, from Python.

    import tinyasr
    recognizer = tinyasr.load_recognizer()   # the shipped model; a dir, .tac, "whisper-tiny.en"
    print(recognizer.transcribe(tinyasr.load_wav("speech.wav")))
    tinyasr.compile_model("model.tac", "host", "out/host")   # a deployable for a board
    print(tinyasr.transcribe("speech.wav", tinyasr.load_deployable("out/host")))

Every `import tinyasr.<sub>` runs this file first, the command line's included, so nothing is
imported here: each name loads its module on first use (PEP 562 `__getattr__`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it
_EXPORTS = {
    "Recognizer": "tinyasr.api",
    "load_recognizer": "tinyasr.api",
    "load_deployable": "tinyasr.api",
    "transcribe": "tinyasr.api",
    "compile_model": "tinyasr.api",
    "export_onnx": "tinyasr.api",
    "boards": "tinyasr.api",
    "load_wav": "tinyasr.model.data.datadir",
    "DecodeMode": "tinyasr.model.decoding.options",
    "DecodeOptions": "tinyasr.model.decoding.options",
    "InputError": "tinyasr.model.common.errors",
    "DEFAULT_MODEL": "tinyasr.model.network.pretrained_paths",
}

__all__ = [   # the names of _EXPORTS and __version__, spelled out: type checkers read a literal
    "Recognizer", "load_recognizer", "load_deployable", "transcribe", "compile_model",
    "export_onnx", "boards", "load_wav", "DecodeMode", "DecodeOptions", "InputError",
    "DEFAULT_MODEL", "__version__",
]

if TYPE_CHECKING:   # what type checkers see; at run time __getattr__ imports on first use
    # ruff: noqa: F401
    from tinyasr.api import (
        Recognizer,
        boards,
        compile_model,
        export_onnx,
        load_deployable,
        load_recognizer,
        transcribe,
    )
    from tinyasr.model.common.errors import InputError
    from tinyasr.model.data.datadir import load_wav
    from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
    from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL

    __version__: str


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        value: Any = version("tinyasr")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'tinyasr' has no attribute {name!r}")
    globals()[name] = value   # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
