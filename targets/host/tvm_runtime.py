"""TVM's runtime alone, for a process that only runs deployables (`tinyasr transcribe --lib`).

`import tvm` loads TVM's compiler library and its Python front ends, and tvm_ffi imports torch
and ml_dtypes whenever they are installed (for tensor interchange with them, which running a
deployable does not use): about 3 s of CPU before the first sample is read, against 0.4 s for
the runtime alone. Not for a library call: it changes what the whole process can import.
"""

from __future__ import annotations

import os
import sys

# Imported by tvm_ffi when installed; running a deployable needs neither.
SKIPPED_MODULES = ("torch", "ml_dtypes")


def use_runtime_only_tvm() -> bool:
    """Before TVM's first import: load its runtime library without the compiler (TVM's own
    TVM_USE_RUNTIME_LIB switch) and keep torch and ml_dtypes out of this process (an import of
    either then raises ImportError, which tvm_ffi and TVM handle). True if it took effect; False
    when TVM or one of those modules is already imported, and then nothing is changed."""
    if any(name in sys.modules for name in ("tvm", "tvm_ffi", *SKIPPED_MODULES)):
        return False
    os.environ["TVM_USE_RUNTIME_LIB"] = "1"
    for name in SKIPPED_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]   # import raises ImportError
    return True

