"""Cross-build the TVM board runtime: libtvm_ffi, libtvm_runtime, our RPC server and transcriber.

Sources come only from package registries (the apache-tvm wheel's `tvm/src/runtime` and headers,
the apache-tvm-ffi sdist) plus the project's own code in `targets/runtime/` (the support headers
the wheel lacks and the two programs) and `model/native/` (the CTC search the host runs too).
Outputs land in `~/.cache/tinyasr/runtime/<arch>-<hash>/`, keyed by a hash of every input, so a
second build of the same inputs is instant.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tinyasr.model.decoding.search import NATIVE_CFLAGS, NATIVE_DIR
from tinyasr.targets.boards import Board

CACHE_ROOT = Path(os.environ.get("TINYASR_CACHE", Path.home() / ".cache" / "tinyasr"))
OWN_SOURCES = Path(__file__).parent / "runtime"
SERVER_NAME = "tinyasr-rpc-server"
TRANSCRIBER_NAME = "tinyasr-run"

# The runtime proper: device API, modules, tensors, threads, the Relax VM, RPC, and the random
# fill MetaSchedule's runner calls on the board. GPU, disco and LLM-serving parts are left out.
RUNTIME_SOURCES = [
    "builtin_fp16.cc", "const_loader_module.cc", "cpu_device_api.cc", "device_api.cc",
    "file_utils.cc", "logging.cc", "module.cc", "static_library.cc", "tensor.cc",
    "thread_pool.cc", "threading_backend.cc", "timer.cc", "workspace_pool.cc",
    "memory/memory_manager.cc",
    "rpc/rpc_channel.cc", "rpc/rpc_device_api.cc", "rpc/rpc_endpoint.cc",
    "rpc/rpc_local_session.cc", "rpc/rpc_module.cc", "rpc/rpc_server_env.cc",
    "rpc/rpc_session.cc", "rpc/rpc_socket_impl.cc",
    "vm/builtin.cc", "vm/bytecode.cc", "vm/executable.cc", "vm/tensor_cache_support.cc",
    "vm/vm.cc",
    "extra/contrib/random/random.cc",
]

FFI_SOURCES = [
    "object.cc", "error.cc", "function.cc", "tensor.cc", "dtype.cc", "container.cc",
    "init_once.cc", "custom_allocator.cc", "backtrace.cc",
    "extra/structural_equal.cc", "extra/structural_hash.cc", "extra/structural_visit.cc",
    "extra/structural_mutate.cc", "extra/visit_error_context.cc", "extra/json_parser.cc",
    "extra/json_writer.cc", "extra/serialization.cc", "extra/dataclass.cc",
    "extra/reflection_extra.cc", "extra/module.cc", "extra/library_module.cc",
    "extra/library_module_system_lib.cc", "extra/library_module_dynamic_lib.cc",
    "extra/env_context.cc", "extra/env_c_api.cc",
]

# The recipe. Everything below goes into the cache key; bump RECIPE_VERSION when changing how
# the build runs in a way these values do not show (staging layout, defines per library).
RECIPE_VERSION = 2
CXXFLAGS = ["-std=c++17", "-O2", "-fPIC", "-w", "-DTVM_FFI_CMAKE_LITTLE_ENDIAN=1",
            "-DTVM_FFI_USE_LIBBACKTRACE=0", "-DTVM_FFI_BACKTRACE_ON_SEGFAULT=0"]
SYSTEM_LIBS = ["-ldl", "-lpthread"]
SHARED_LINK = ["-shared", "-s", "-Wl,--no-undefined"]
RUNTIME_LINK = ["-ltvm_ffi", "-Wl,-rpath,$ORIGIN"]
# --no-as-needed: the programs find most of the runtime's functions by name only.
PROGRAM_LINK = ["-s", "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi",
               "-Wl,-rpath,$ORIGIN/../lib"]
# The transcriber's CTC search is compiled as the host's is (identical transcripts everywhere).
TRANSCRIBER_FLAGS = NATIVE_CFLAGS


@dataclass(frozen=True)
class Runtime:
    """A finished runtime build for one architecture."""

    directory: Path

    @property
    def lib_dir(self) -> Path:
        return self.directory / "lib"

    @property
    def server(self) -> Path:
        return self.directory / "bin" / SERVER_NAME

    @property
    def transcriber(self) -> Path:
        return self.directory / "bin" / TRANSCRIBER_NAME

    @property
    def manifest(self) -> dict:
        return json.loads((self.directory / "manifest.json").read_text())


@dataclass(frozen=True)
class _Inputs:
    board: Board
    compiler: str
    wheel_runtime: Path    # tvm/src/runtime
    wheel_include: Path    # tvm/include
    ffi_sdist: Path        # unpacked apache-tvm-ffi sdist


def _wheel_root() -> Path:
    import tvm

    return Path(tvm.__file__).parent


def ffi_sdist(log: Callable[[str], None] = print) -> Path:
    """The unpacked apache-tvm-ffi sdist of the installed version, fetched with pip once."""
    version = importlib.metadata.version("apache-tvm-ffi")
    root = CACHE_ROOT / "sdist"
    unpacked = root / f"apache_tvm_ffi-{version}"
    if (unpacked / "src" / "ffi").is_dir():
        return unpacked
    root.mkdir(parents=True, exist_ok=True)
    log(f"fetching the apache-tvm-ffi {version} sdist with pip")
    # --no-binary only for this package: build dependencies may still come as wheels.
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--no-binary", "apache-tvm-ffi", f"apache-tvm-ffi=={version}",
                    "-d", str(root)], check=True)
    with tempfile.TemporaryDirectory(dir=root) as temp:
        with tarfile.open(root / f"apache_tvm_ffi-{version}.tar.gz") as archive:
            archive.extractall(temp, filter="data")
        os.replace(Path(temp) / unpacked.name, unpacked)
    return unpacked


def _hash_inputs(inputs: _Inputs) -> str:
    """Content hash of every source the build reads, the recipe and the compiler's identity."""
    digest = hashlib.sha256()
    version = subprocess.run([inputs.compiler, "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    recipe = [RECIPE_VERSION, CXXFLAGS, SYSTEM_LIBS, SHARED_LINK, RUNTIME_LINK, PROGRAM_LINK,
              TRANSCRIBER_FLAGS, RUNTIME_SOURCES, FFI_SOURCES]
    digest.update(json.dumps([recipe, inputs.board.arch, version, inputs.board.link_flags]).encode())
    trees = [inputs.wheel_runtime, inputs.wheel_include, inputs.ffi_sdist / "src",
             inputs.ffi_sdist / "include", inputs.ffi_sdist / "3rdparty" / "dlpack" / "include",
             OWN_SOURCES, NATIVE_DIR]
    for tree in trees:
        for path in sorted(tree.rglob("*")):
            if path.is_file() and path.suffix in {".cc", ".h", ".hpp"}:
                digest.update(str(path.relative_to(tree)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _stage_sources(inputs: _Inputs, stage: Path) -> None:
    """Copy the sources (so edits during a build cannot leak into it) and lay them out so the
    wheel's relative includes (`../support/...`) find our headers."""
    shutil.copytree(inputs.wheel_runtime, stage / "src" / "runtime")
    shutil.copytree(OWN_SOURCES / "src", stage / "src", dirs_exist_ok=True)
    shutil.copytree(OWN_SOURCES / "include", stage / "include")
    for header in NATIVE_DIR.glob("*.h"):
        shutil.copy(header, stage / "include")


def _compile_all(jobs: list[tuple[Path, Path, list[str]]], compiler: str, workers: int) -> None:
    """Compile (source, object, flags) jobs in parallel at low priority; stop at the first error."""
    def compile_one(job: tuple[Path, Path, list[str]]) -> None:
        source, obj, flags = job
        obj.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["nice", "-n", "10", compiler, *CXXFLAGS, *flags, "-c",
                                 str(source), "-o", str(obj)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {source} failed:\n{result.stderr[-4000:]}")

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for future in as_completed([pool.submit(compile_one, job) for job in jobs]):
            future.result()
    finally:
        pool.shutdown(cancel_futures=True)


def _link(compiler: str, output: Path, objects: list[Path], flags: list[str]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["nice", "-n", "10", compiler, "-o", str(output),
                             *map(str, objects), *flags], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"linking {output.name} failed:\n{result.stderr[-4000:]}")


def _build(inputs: _Inputs, out: Path, work: Path, workers: int) -> None:
    _stage_sources(inputs, work)
    ffi = inputs.ffi_sdist
    includes = [f"-I{work / 'include'}", f"-I{inputs.wheel_include}",
                f"-I{ffi / 'include'}", f"-I{ffi / '3rdparty' / 'dlpack' / 'include'}"]
    ffi_jobs = [(ffi / "src" / "ffi" / name, work / "obj" / "ffi" / f"{name}.o",
                 [*includes, "-DTVM_FFI_EXPORTS"]) for name in FFI_SOURCES]
    runtime_jobs = [(work / "src" / "runtime" / name, work / "obj" / "runtime" / f"{name}.o",
                     [*includes, "-DTVM_RUNTIME_EXPORTS"]) for name in RUNTIME_SOURCES]
    programs = {  # output name -> compile job
        SERVER_NAME: (work / "src" / "rpc_server.cc", work / "obj" / "rpc_server.o",
                      [*includes, f"-I{work / 'src'}"]),
        TRANSCRIBER_NAME: (work / "src" / "tinyasr_run.cc", work / "obj" / "tinyasr_run.o",
                           [*includes, *TRANSCRIBER_FLAGS]),
    }
    _compile_all([*ffi_jobs, *runtime_jobs, *programs.values()], inputs.compiler, workers)

    lib = out / "lib"
    platform_libs = [*SYSTEM_LIBS, *inputs.board.link_flags]
    _link(inputs.compiler, lib / "libtvm_ffi.so", [obj for _, obj, _ in ffi_jobs],
          [*SHARED_LINK, *platform_libs])
    _link(inputs.compiler, lib / "libtvm_runtime.so", [obj for _, obj, _ in runtime_jobs],
          [*SHARED_LINK, f"-L{lib}", *RUNTIME_LINK, *platform_libs])
    for name, (_, obj, _) in programs.items():
        _link(inputs.compiler, out / "bin" / name, [obj],
              [f"-L{lib}", *PROGRAM_LINK, *platform_libs])


def _sizes(out: Path) -> dict[str, int]:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    return {str(p.relative_to(out)): p.stat().st_size for p in files}


def build_runtime(board: Board, workers: int = 2, log: Callable[[str], None] = print) -> Runtime:
    """The runtime for `board`'s architecture, built now unless an identical build is cached."""
    compiler = board.require_cross_compiler()
    wheel = _wheel_root()
    inputs = _Inputs(board, compiler, wheel / "src" / "runtime", wheel / "include",
                     ffi_sdist(log))
    out = CACHE_ROOT / "runtime" / f"{board.arch}-{_hash_inputs(inputs)}"
    if (out / "manifest.json").is_file():
        return Runtime(out)
    log(f"building the {board.arch} runtime with {Path(compiler).name} ({workers} jobs) ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as temp:
        staged, work = Path(temp) / "out", Path(temp) / "work"
        _build(inputs, staged, work, workers)
        manifest = {"arch": board.arch, "compiler": compiler,
                    "build_seconds": round(time.monotonic() - start, 1), "sizes": _sizes(staged)}
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.replace(staged, out)
        except OSError:
            if not (out / "manifest.json").is_file():  # not a concurrent identical build
                raise
    return Runtime(out)


def describe(runtime: Runtime) -> str:
    """Sizes and build time, one line per file: the footprint is part of the product."""
    manifest = runtime.manifest
    lines = [f"{runtime.directory}  ({manifest['arch']}, built in {manifest['build_seconds']} s)"]
    lines += [f"  {size / 1024:9.1f} KiB  {name}" for name, size in manifest["sizes"].items()]
    total = sum(manifest["sizes"].values())
    lines.append(f"  {total / 1024:9.1f} KiB  total")
    return "\n".join(lines)

