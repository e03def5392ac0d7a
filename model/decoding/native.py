"""The decoding steps the host shares with the boards' transcriber, in C++: the CTC prefix beam
search (targets/native/src/ctc_search.h) and the prefix tree the attention decoder rescores
(decoding.h), called through the C functions of decoding_capi.cc.

The library is built with the system C++ compiler on first use into CACHE_ROOT/native/, named
by a hash of its sources and flags (an edit rebuilds it; processes building at once each write
their own file and rename it into place), and loaded by ctypes: nothing to import, where
tvm-ffi's import cost the PyTorch path 0.7 s.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
from pathlib import Path

from tinyasr.model.common.cache import CACHE_ROOT

# The C++ sources: targets/native/src, beside the rest of the project's C++ (one CMake
# project). A path, not an import: the package tinyasr.targets ships the files (package-data).
NATIVE_DIR = Path(__file__).resolve().parents[2] / "targets" / "native" / "src"
# How the C++ decoding is compiled on the host and into the boards' transcriber: no contracted
# multiply-adds, so every machine does the same IEEE double arithmetic step by step.
NATIVE_CFLAGS = ["-ffp-contract=off"]
NATIVE_BUILD = ["-O2", "-std=c++17", "-shared", "-fPIC", *NATIVE_CFLAGS]
SOURCES = ["decoding_capi.cc", "ctc_search.h", "decoding.h"]   # the first is compiled

_POINTER, _INT = ctypes.c_void_p, ctypes.c_int64
# each C function's (result, arguments), as decoding_capi.cc declares them
SIGNATURES = {
    "tinyasr_ctc_prefix_beam_search": (_INT, [_POINTER, _INT, _INT, _INT, _INT, _POINTER, _INT,
                                              _POINTER, _POINTER]),
    "tinyasr_prefix_tree": (_INT, [_POINTER, _POINTER, _INT, _INT, _INT, _INT, _POINTER,
                                   _POINTER, _POINTER, _POINTER, _POINTER]),
    "tinyasr_path_scores": (None, [_POINTER, _POINTER, _INT, _POINTER, _POINTER, _INT, _INT,
                                   _POINTER]),
}


@functools.cache
def native_library() -> ctypes.CDLL:
    """The built library, its functions typed as SIGNATURES says."""
    sources = [NATIVE_DIR / name for name in SOURCES]
    digest = hashlib.sha256()
    for part in [*(path.read_bytes() for path in sources), " ".join(NATIVE_BUILD).encode()]:
        digest.update(part)
    library = CACHE_ROOT / "native" / f"decoding-{digest.hexdigest()[:16]}.so"
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        scratch = library.with_name(f".{library.name}.{os.getpid()}.tmp")
        compiler = os.environ.get("CXX", "g++")
        try:
            subprocess.run([compiler, *NATIVE_BUILD, f"-I{NATIVE_DIR}", str(sources[0]), "-o",
                            str(scratch)], check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as error:
            scratch.unlink(missing_ok=True)
            detail = getattr(error, "stderr", None) or str(error)
            raise RuntimeError(f"building the C++ decoding with {compiler} failed: "
                               f"{detail.strip()[:500]}") from None
        os.replace(scratch, library)
    loaded = ctypes.CDLL(str(library))
    for name, (result, arguments) in SIGNATURES.items():
        function = getattr(loaded, name)
        function.restype, function.argtypes = result, arguments
    return loaded
