"""The registry of named boards.

A board is what a user names on the command line (`--target rpi4`): its LLVM target for TVM
0.27 (a dict; text targets with flags are rejected there), the cross compiler that links its
shared libraries, and how qemu-user emulates it in tests.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyasr.model.common.errors import InputError


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    arch: str                      # ELF machine family: "x86_64", "aarch64" or "riscv64"
    llvm_target: dict[str, Any] | None  # TVM 0.27 target dict; None: this machine's cpu
    cross_compiler: str | None     # g++ driver that links for this board; None: the host's
    cross_package: str | None      # Debian package that provides `cross_compiler`
    sysroot: str | None            # qemu-user's -L: the target's libc
    qemu_cpu: list[str] = field(default_factory=list)  # extra qemu-user arguments
    link_flags: list[str] = field(default_factory=list)

    @property
    def is_host(self) -> bool:
        """Runs on this machine: no cross compiler, no emulator."""
        return self.cross_compiler is None

    @property
    def qemu_binary(self) -> str | None:
        return None if self.is_host else f"qemu-{self.arch}"

    def library_compiler(self):
        """`export_library`'s fcompile for this board: None on the host, else its cross g++."""
        if self.is_host:
            return None
        from tvm.support import cc

        return cc.cross_compiler(self.require_cross_compiler(), options=self.link_flags)

    def require_cross_compiler(self) -> str:
        """The cross compiler's path, or a one-line error naming the Debian package to install."""
        compiler = self.cross_compiler or "g++"
        path = shutil.which(compiler)
        if path is None:
            package = self.cross_package or "g++"
            raise InputError(f"board {self.name!r} needs {compiler}: apt-get install {package}")
        return path


def _cross_board(arch: str, triple: str, name: str, description: str, cpu: str,
                 mattr: list[str], qemu_cpu: str, target_extra: dict[str, Any] | None = None,
                 link_flags: list[str] | None = None) -> Board:
    """A Linux board whose code Debian's `<arch>-linux-gnu` cross toolchain links."""
    gnu = f"{arch}-linux-gnu"
    return Board(
        name=name,
        description=description,
        arch=arch,
        llvm_target={"kind": "llvm", "mtriple": triple, "mcpu": cpu, **(target_extra or {}),
                     "mattr": mattr, "num-cores": 4},
        cross_compiler=f"{gnu}-g++",
        cross_package=f"g++-{gnu}",
        sysroot=f"/usr/{gnu}",
        qemu_cpu=["-cpu", qemu_cpu],
        link_flags=link_flags or [],
    )


def _aarch64(name: str, description: str, cpu: str, mattr: list[str], qemu_cpu: str) -> Board:
    return _cross_board("aarch64", "aarch64-linux-gnu", name, description, cpu, mattr, qemu_cpu)


_RV64GC = ["+64bit", "+m", "+a", "+f", "+d", "+c"]


def _riscv64(name: str, description: str, cpu: str, mattr: list[str], qemu_cpu: str) -> Board:
    # riscv64 links need libatomic: GCC lowers 1- and 2-byte atomics there to __atomic_* calls.
    # lp64d is the Debian riscv64 ABI.
    return _cross_board("riscv64", "riscv64-unknown-linux-gnu", name, description, cpu, mattr,
                        qemu_cpu, target_extra={"mabi": "lp64d"}, link_flags=["-latomic"])


def _native(name: str, description: str, llvm_target: dict[str, Any] | None) -> Board:
    """A board that is this machine, or a cpu class it belongs to (linked by the host's g++)."""
    return Board(name=name, description=description, arch=platform.machine(),
                 llvm_target=llvm_target, cross_compiler=None, cross_package=None, sysroot=None)


BOARDS: dict[str, Board] = {board.name: board for board in [
    # The host's target is read from TVM when used (its real cpu, e.g. znver5); see host_target().
    _native("host", f"this machine ({platform.machine()}, its own cpu)", None),
    _native("x86-64-v3", "any x86-64 with AVX2 and FMA (x86-64-v3)",
            {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v3"}),
    _aarch64("rpi3", "Raspberry Pi 3 (Cortex-A53)", "cortex-a53", ["+neon"], "cortex-a53"),
    _aarch64("rpi4", "Raspberry Pi 4 (Cortex-A72)", "cortex-a72", ["+neon"], "cortex-a72"),
    _aarch64("rpi5", "Raspberry Pi 5 (Cortex-A76, dot product)", "cortex-a76",
             ["+neon", "+dotprod"], "cortex-a76"),
    _riscv64("visionfive2", "StarFive VisionFive 2 (SiFive U74, rv64gc)", "sifive-u74",
             _RV64GC, "rv64"),
    _riscv64("k230", "Canaan K230 (XuanTie C908, rv64gcv, RVV 1.0 VLEN=128)", "generic-rv64",
             _RV64GC + ["+v"], "rv64,v=true,vlen=128,elen=64,vext_spec=v1.0"),
]}


def missing_features(llvm_target: dict[str, Any], board: Board) -> list[str]:
    """Instruction-set attributes (`+v`, `+dotprod`) a deployable's code was generated with
    that `board`'s own target lacks: that code would die there on an illegal instruction.
    Boards without a fixed target (the host) are not checked here."""
    if board.llvm_target is None:
        return []
    has = set(board.llvm_target.get("mattr", []))
    return [feature for feature in llvm_target.get("mattr", [])
            if feature.startswith("+") and feature not in has]


def check_features(deployable: Path, manifest: dict[str, Any], board: Board) -> None:
    """One line naming what is missing when a deployable's code needs extensions `board` lacks
    (a k230 deployable's RVV code on a VisionFive 2, an rpi5 one's dot products on a Pi 4)."""
    missing = missing_features(manifest.get("llvm_target", {}), board)
    if missing:
        raise InputError(f"{deployable}: built for {manifest['target']}, whose code uses "
                         f"{', '.join(missing)}; {board.name} lacks it")


# x86-64 extensions a deployable's code may use, by LLVM's name, with the flag Linux lists for it
# in /proc/cpuinfo. The manifest records those the target's cpu has (`cpu_features`, cpu_features
# below), and the runners (Python's and tinyasr-run) refuse the deployable in one line on a CPU
# without them, instead of dying on an illegal instruction: a `host` deployable compiled on an
# AVX-512 or AMX machine and run on another x86-64 machine. The arm and RISC-V boards' extensions
# are checked from the manifest's mattr instead (missing_features; tinyasr-run's AT_HWCAP).
X86_FEATURES = {
    "sse4.2": "sse4_2", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c",
    "bmi2": "bmi2", "avx512f": "avx512f", "avx512cd": "avx512cd", "avx512bw": "avx512bw",
    "avx512dq": "avx512dq", "avx512vl": "avx512vl", "avx512ifma": "avx512ifma",
    "avx512vbmi": "avx512vbmi", "avx512vbmi2": "avx512_vbmi2", "avx512vnni": "avx512_vnni",
    "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
    "avx512vp2intersect": "avx512_vp2intersect", "avxvnni": "avx_vnni", "amx-tile": "amx_tile",
    "amx-int8": "amx_int8", "amx-bf16": "amx_bf16"}


def cpu_features(llvm_target: dict[str, Any]) -> list[str]:
    """The /proc/cpuinfo flags (X86_FEATURES) of the extensions that code generated for an x86-64
    LLVM target may use, per LLVM's model of its cpu and mattr; [] for other architectures."""
    if not str(llvm_target.get("mtriple", "")).startswith("x86_64"):
        return []
    import tvm
    from tvm.target import codegen

    has = set(codegen.llvm_get_cpu_features(tvm.target.Target(llvm_target)))
    return sorted(flag for name, flag in X86_FEATURES.items() if name in has)


# arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) as syscall(2) numbers (x86-64 Linux):
# a process's request for the AMX tile registers, which Linux 5.16 and later grant on request
# only; a tile instruction without the grant is SIGILL
SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18


def request_amx_tiles() -> str | None:
    """Asks Linux for this process's AMX tile registers; None once granted, else why not."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(ctypes.c_long(SYS_ARCH_PRCTL), ctypes.c_long(ARCH_REQ_XCOMP_PERM),
                    ctypes.c_long(XFEATURE_XTILEDATA)) == 0:
        return None
    return os.strerror(ctypes.get_errno())


def machine_cpu_flags() -> set[str] | None:
    """This machine's CPU flags from /proc/cpuinfo (its first `flags` line), None if unreadable."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def check_cpu_features(deployable: Path, manifest: dict[str, Any]) -> None:
    """One line naming what this CPU lacks of the manifest's `cpu_features` (x86-64; unchecked
    where /proc/cpuinfo cannot be read), or that Linux refused the AMX tile registers its
    kernels use (`amx_tiles`), before any of the deployable's code runs here."""
    flags = machine_cpu_flags()
    missing = [flag for flag in manifest.get("cpu_features", [])
               if flags is not None and flag not in flags]
    cpu = manifest.get("llvm_target", {}).get("mcpu", "?")
    if missing:
        raise InputError(f"{deployable}: built for {manifest['target']} ({cpu}), whose code "
                         f"uses {', '.join(missing)}, which this CPU lacks")
    refused = request_amx_tiles() if manifest.get("amx_tiles") else None
    if refused is not None:
        raise InputError(f"{deployable}: built for {manifest['target']} ({cpu}) with int8 "
                         f"kernels on AMX tiles, which Linux refused this process ({refused}; "
                         "it grants them from Linux 5.16)")


def get_board(name: str) -> Board:
    """The board called `name`, or a one-line error listing the known ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise InputError(f"unknown target {name!r}; known targets: {', '.join(BOARDS)}") from None


# LLVM floating-point freedoms every board's code is generated with. Reassociation is what lets
# LLVM vectorize a float reduction (sum, max) that no tuned schedule vectorized: layer norm,
# softmax and abs-max are otherwise scalar chains (the host's int8 encoder 8.2 -> 7.6 ms side by
# side; layer norm 3.4x, softmax 2.1x). Results differ from strict IEEE order by rounding only;
# infinities stay allowed.
FAST_MATH = {"fast-math-reassoc": True, "fast-math-contract": True, "fast-math-arcp": True,
             "fast-math-nnan": True, "fast-math-nsz": True}


def board_target(board: Board) -> dict[str, Any]:
    """The board's LLVM target dict (the host's read from TVM: its real cpu), with FAST_MATH."""
    return {**(host_target() if board.llvm_target is None else board.llvm_target), **FAST_MATH}


# Extensions the compiler has kernels for that a host may have beyond LLVM's model of the cpu it
# names: under a hypervisor LLVM reads the cpu from the family and model numbers, which need not
# match the flags (an AMX Xeon VM was named rocketlake, which has no AMX). A host target with
# them added tunes into a database of its own (compile/schedule_database.py device_name).
HOST_EXTENSIONS = ("amx-tile", "amx-int8")


def host_target() -> dict[str, Any]:
    """The host's LLVM target dict with its real cpu (TVM ignores mcpu=native), plus the
    HOST_EXTENSIONS this machine's flags list and that cpu's model lacks."""
    import tvm

    # tvm.cpu() is a tvm_ffi Device; TVM declares tvm.runtime's Device
    target = dict(tvm.target.Target.from_device(
        tvm.cpu()).export())  # pyright: ignore[reportArgumentType]
    flags = machine_cpu_flags() or set()
    modelled = set(cpu_features(target))
    extra = [f"+{name}" for name in HOST_EXTENSIONS
             if X86_FEATURES[name] in flags and X86_FEATURES[name] not in modelled]
    if extra:
        target["mattr"] = [*target.get("mattr", []), *extra]
    return target
