"""Cross-build the TVM board runtime: libtvm_ffi, libtvm_runtime, our RPC server and transcriber.

The build is the CMake project in `targets/native/` (all our C++: `src/`, the shims of headers
the wheel lacks in `tvm_shims/`, toolchain files per architecture in `cmake/`), configured and
built with Ninja here. TVM's sources come only from package registries (the apache-tvm wheel's
`tvm/src/runtime` and headers, the apache-tvm-ffi sdist).

Outputs land in `~/.cache/tinyasr/runtime/<arch>-<hash>/`, keyed by a hash of every input, so a
second build of the same inputs is instant. CMake's build tree stays in
`~/.cache/tinyasr/runtime/build/<arch>-<toolchain>/` between builds, so an edit of our code
recompiles only what it touches (the TVM libraries are not rebuilt).

Board runtimes are built against Debian 11's C and C++ runtime (`BOARD_SYSROOT`, unpacked by
`targets/setup_sysroot.sh`; `cmake/board-sysroot.cmake` says how), so they run on glibc 2.31
images; the manifest records the newest symbol versions each file requires.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tinyasr.model.common.atomic import scratch_prefix
from tinyasr.model.common.cache import CACHE_ROOT
from tinyasr.model.common.errors import InputError
from tinyasr.model.decoding.native import NATIVE_CFLAGS, NATIVE_DIR
from tinyasr.targets.boards import Board

PROJECT = NATIVE_DIR.parent          # targets/native: CMakeLists.txt, src/, tvm_shims/, cmake/
SERVER_NAME = "tinyasr-rpc-server"
TRANSCRIBER_NAME = "tinyasr-run"
STATIC_TRANSCRIBER_NAME = "tinyasr-run-static"   # the same, the runtime linked in
# the same objects and TVM's system library, for `tinyasr compile --static` to link a model into
TRANSCRIBER_ARCHIVE = Path("lib") / "static" / "libtinyasr-transcriber.a"
# Bump when the way this module drives CMake changes in a way the hashed files do not show.
RECIPE_VERSION = 4
# Debian 11's glibc 2.31 and libstdc++ 10 for both board architectures (targets/setup_sysroot.sh).
BOARD_SYSROOT = CACHE_ROOT / "sysroot" / "bullseye"
SYSROOT_SETUP = Path(__file__).resolve().parent / "setup_sysroot.sh"   # unpacks BOARD_SYSROOT
# The symbol version families a dynamically linked program asks of its C and C++ runtime.
RUNTIME_VERSION_FAMILIES = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")
# The transcriber's CTC search is compiled as the host's is (identical transcripts everywhere).
TRANSCRIBER_FLAGS = NATIVE_CFLAGS
REBUILDS = 3   # builds tried when our sources change while one runs


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
    def static_transcriber(self) -> Path:
        """tinyasr-run with the runtime linked in: the one file to copy besides a deployable."""
        return self.directory / "bin" / STATIC_TRANSCRIBER_NAME

    @property
    def transcriber_archive(self) -> Path:
        """The transcriber's objects, a model's to be linked with them (compile --static)."""
        return self.directory / TRANSCRIBER_ARCHIVE

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
    sysroot: Path | None   # the older C/C++ runtime built against (boards), None on the host


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
    # a killed unpack's folder is reclaimed by the next (scratch_prefix)
    with tempfile.TemporaryDirectory(dir=root, prefix=scratch_prefix(".unpack-", root)) as temp:
        with tarfile.open(root / f"apache_tvm_ffi-{version}.tar.gz") as archive:
            archive.extractall(temp, filter="data")
        os.replace(Path(temp) / unpacked.name, unpacked)
    return unpacked


def _cmake_version() -> str:
    return subprocess.run(["cmake", "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


def _hash_inputs(inputs: _Inputs) -> str:
    """Content hash of every source the build reads, the recipe and the tools' identities."""
    digest = hashlib.sha256()
    version = subprocess.run([inputs.compiler, "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    recipe = [RECIPE_VERSION, TRANSCRIBER_FLAGS, _cmake_version()]
    # The sysroot by its packages' versions (packages.txt, written when it was unpacked).
    sysroot = (inputs.sysroot / "packages.txt").read_text() if inputs.sysroot else None
    identity = [recipe, inputs.board.arch, version, inputs.board.link_flags, sysroot]
    digest.update(json.dumps(identity).encode())
    trees = [inputs.wheel_runtime, inputs.wheel_include, inputs.ffi_sdist / "src",
             inputs.ffi_sdist / "include", inputs.ffi_sdist / "3rdparty" / "dlpack" / "include",
             PROJECT]
    for tree in trees:
        for path in sorted(tree.rglob("*")):
            if path.is_file() and (path.suffix in {".cc", ".h", ".hpp", ".cmake"}
                                   or path.name == "CMakeLists.txt"):
                digest.update(str(path.relative_to(tree)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def toolchain_file(board: Board) -> Path | None:
    """The CMake toolchain file of a cross board's architecture; None for the host."""
    return None if board.is_host else PROJECT / "cmake" / f"{board.arch}-linux-gnu.cmake"


def board_sysroot(board: Board) -> Path | None:
    """The older C/C++ runtime a cross board's runtime is built against; None for the host.
    A missing one is a one-line error naming the set-up step that unpacks it."""
    if board.is_host:
        return None
    if not (BOARD_SYSROOT / "packages.txt").is_file():
        raise InputError(f"the board sysroot (glibc 2.31) is missing at {BOARD_SYSROOT}: "
                         f"run sh {SYSROOT_SETUP} (make setup does)")
    return BOARD_SYSROOT


def version_key(version: str) -> tuple[int, ...]:
    """GLIBC_2.27 -> (2, 27): symbol versions compared as numbers."""
    return tuple(int(part) for part in version.rpartition("_")[2].split("."))


def _newest(versions: list[str]) -> dict[str, str]:
    """The newest version of each family (GLIBC, GLIBCXX, ...) among `versions`."""
    newest: dict[str, str] = {}
    for version in versions:
        family = version.rpartition("_")[0]
        if family not in newest or version_key(version) > version_key(newest[family]):
            newest[family] = version
    return dict(sorted(newest.items()))


def required_versions(path: Path, arch: str) -> dict[str, str]:
    """The newest version of each runtime symbol family (GLIBC_2.27, GLIBCXX_3.4.26, ...) that
    the ELF file at `path` requires, read from its dynamic symbols with binutils' objdump (the
    board's cross objdump, which reads that architecture's ELF)."""
    objdump = shutil.which(f"{arch}-linux-gnu-objdump") or "objdump"
    table = subprocess.run([objdump, "-T", str(path)], capture_output=True, text=True,
                           check=True).stdout
    families = "|".join(RUNTIME_VERSION_FAMILIES)
    return _newest(re.findall(rf"\b(?:{families})_[0-9][0-9.]*\b", table))


def board_configuration(board: Board, compiler: str, sysroot: Path | None) -> list[str]:
    """CMake's -D arguments for building for `board`: its toolchain file, compiler, older C/C++
    runtime and extra link flags (this project's and the static transcriber's link project)."""
    toolchain = toolchain_file(board)
    return [*([f"-DCMAKE_TOOLCHAIN_FILE={toolchain}"] if toolchain else []),
            f"-DCMAKE_CXX_COMPILER={compiler}",
            f"-DTINYASR_LINK_LIBS={';'.join(board.link_flags)}",
            f"-DTINYASR_SYSROOT={sysroot or ''}"]


def cmake_commands(inputs: _Inputs, build: Path, prefix: Path, workers: int) -> list[list[str]]:
    """Configure (Ninja), build and install the runtime into `prefix`: lib/, bin/."""
    configure = ["cmake", "-S", str(PROJECT), "-B", str(build), "-G", "Ninja",
                 *board_configuration(inputs.board, inputs.compiler, inputs.sysroot),
                 f"-DTVM_WHEEL_DIR={inputs.wheel_runtime.parent.parent}",
                 f"-DTVM_FFI_SOURCE_DIR={inputs.ffi_sdist}",
                 f"-DTINYASR_SEARCH_FLAGS={' '.join(TRANSCRIBER_FLAGS)}"]
    return [configure,
            ["nice", "-n", "10", "cmake", "--build", str(build), "-j", str(workers)],
            ["cmake", "--install", str(build), "--prefix", str(prefix)]]


def run_build_step(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-6000:]
        raise RuntimeError(f"{what} failed ({' '.join(command)}):\n{output}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (one build at a time per build tree)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(inputs: _Inputs, build: Path, out: Path, workers: int) -> None:
    """Configure, build, install. Sources are read in place: build_runtime checks afterwards
    that they did not change during the build."""
    configure, *rest = cmake_commands(inputs, build, out, workers)
    what = f"the {inputs.board.arch} runtime"
    try:
        run_build_step(configure, f"configuring {what}")
    except RuntimeError:
        if not build.exists():
            raise
        shutil.rmtree(build)   # a build tree left unusable (an interrupted first configure)
        run_build_step(configure, f"configuring {what}")
    for command, step in zip(rest, ["building", "installing"], strict=True):
        run_build_step(command, f"{step} {what}")


def _sizes(out: Path) -> dict[str, int]:
    """The bytes of each file a board may be given (not the archive `compile --static` links)."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"
                   and p.relative_to(out) != TRANSCRIBER_ARCHIVE)
    return {str(p.relative_to(out)): p.stat().st_size for p in files}


def build_runtime(board: Board, workers: int = 2, log: Callable[[str], None] = print) -> Runtime:
    """The runtime for `board`'s architecture, built now unless an identical build is cached."""
    compiler = board.require_cross_compiler()
    wheel = _wheel_root()
    inputs = _Inputs(board, compiler, wheel / "src" / "runtime", wheel / "include",
                     ffi_sdist(log), board_sysroot(board))
    key = _hash_inputs(inputs)
    out = CACHE_ROOT / "runtime" / f"{board.arch}-{key}"
    if (out / "manifest.json").is_file():
        return Runtime(out)
    tools = hashlib.sha256(json.dumps([compiler, board.link_flags, str(inputs.sysroot)])
                           .encode()).hexdigest()[:8]
    build = CACHE_ROOT / "runtime" / "build" / f"{board.arch}-{tools}"
    with _locked(build.with_suffix(".lock")):
        for _ in range(REBUILDS):
            if (out / "manifest.json").is_file():   # built meanwhile by another process
                return Runtime(out)
            log(f"building the {board.arch} runtime with CMake and {Path(compiler).name} "
                f"({workers} jobs) in {build} ...")
            start = time.monotonic()
            with tempfile.TemporaryDirectory(  # a killed build's staging is reclaimed
                    dir=out.parent, prefix=scratch_prefix(f".{out.name}.", out.parent)) as temp:
                staged = Path(temp) / "out"
                _build(inputs, build, staged, workers)
                if _hash_inputs(inputs) != key:   # a source changed during the build
                    key = _hash_inputs(inputs)
                    out = CACHE_ROOT / "runtime" / f"{board.arch}-{key}"
                    continue
                manifest = {"arch": board.arch, "compiler": compiler,
                            "build_seconds": round(time.monotonic() - start, 1),
                            "sizes": _sizes(staged),
                            "requires": {name: required_versions(staged / name, board.arch)
                                         for name in _sizes(staged)}}
                (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
                try:
                    os.replace(staged, out)
                except OSError:
                    if not (out / "manifest.json").is_file():  # not a concurrent identical build
                        raise
            return Runtime(out)
    raise RuntimeError(f"the {board.arch} runtime's sources kept changing during its build")


def describe(runtime: Runtime) -> str:
    """Sizes and build time, one line per file: the footprint is part of the product."""
    manifest = runtime.manifest
    lines = [f"{runtime.directory}  ({manifest['arch']}, built in {manifest['build_seconds']} s)"]
    lines += [f"  {size / 1024:9.1f} KiB  {name}" for name, size in manifest["sizes"].items()]
    total = sum(manifest["sizes"].values())
    lines.append(f"  {total / 1024:9.1f} KiB  total")
    floor = runtime_floor(runtime)
    if floor:
        lines.append(f"  requires at most {', '.join(floor.values())}")
    return "\n".join(lines)


def runtime_floor(runtime: Runtime) -> dict[str, str]:
    """The newest symbol version of each family any file of the runtime requires: what the
    board's image must provide (its glibc and libstdc++)."""
    requires = runtime.manifest.get("requires", {})
    return _newest([version for versions in requires.values() for version in versions.values()])
