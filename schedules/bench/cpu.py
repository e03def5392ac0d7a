"""The core's fp32 peak, the yardstick of every row's GFLOP/s, and the CPU's name, both read
from /proc/cpuinfo."""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

FMA_UNITS = 2                      # assumed FMA pipes per core (see `core_peak`)
# (vendor_id, cpu family) whose cores run a 512-bit FMA on both of their two 256-bit pipes:
# AMD Zen 4 (family 25, 0x19; Zen 3, the same family, has no AVX-512)
SPLIT_AVX512_CORES = {("AuthenticAMD", "25")}


@dataclass(frozen=True)
class CorePeak:
    """fp32 peak of one core: lanes x 2 (an FMA is a multiply and an add) x FMA units x GHz."""

    vector_isa: str
    lanes: int
    fma_units: int
    ghz: float | None

    @property
    def gflops(self) -> float | None:
        return None if self.ghz is None else self.lanes * 2 * self.fma_units * self.ghz

    def formula(self) -> str:
        clock = "unknown clock" if self.ghz is None else f"{self.ghz:.2f} GHz"
        total = "" if self.gflops is None else f" = {self.gflops:.1f} GFLOP/s"
        return (f"{self.lanes} fp32 lanes ({self.vector_isa}) x 2 FLOPs per FMA x "
                f"{self.fma_units} FMA unit{'s' if self.fma_units > 1 else ''} x {clock}{total}")


def core_peak(cpuinfo: str | None = None) -> CorePeak:
    """One core's fp32 peak from /proc/cpuinfo: the widest vector ISA in its flags gives the
    lanes, the clock is cpufreq's maximum when the kernel exposes it, else the highest
    "cpu MHz". cpuinfo does not say how many FMA pipes a core has: FMA_UNITS = 2 is what
    x86 cores since Haswell / Zen 2 and Cortex-A7x cores have at their widest vectors, but a
    Zen 4 core (SPLIT_AVX512_CORES) issues one 512-bit FMA per cycle over both its pipes."""
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = set(" ".join(re.findall(r"^(?:flags|Features)\s*:(.*)$", cpuinfo, re.M)).split())
    if "avx512f" in flags:
        isa, lanes = "AVX-512", 16
    elif {"avx2", "fma"} <= flags:
        isa, lanes = "AVX2+FMA", 8
    elif "asimd" in flags:
        isa, lanes = "NEON", 4
    else:
        isa, lanes = "scalar", 1
    core = (_field(cpuinfo, "vendor_id"), _field(cpuinfo, "cpu family"))
    split = isa == "AVX-512" and core in SPLIT_AVX512_CORES
    return CorePeak(isa, lanes, 1 if split else FMA_UNITS, _clock_ghz(cpuinfo))


def _field(cpuinfo: str, name: str) -> str | None:
    """The first value of a /proc/cpuinfo field."""
    found = re.search(rf"^{name}\s*:\s*(.*?)\s*$", cpuinfo, re.M)
    return found.group(1) if found else None


def _clock_ghz(cpuinfo: str) -> float | None:
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.is_file():
        return int(max_freq.read_text()) / 1e6   # kHz
    mhz = [float(value) for value in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)]
    return max(mhz) / 1e3 if mhz else None


def cpu_name() -> str:
    return _field(Path("/proc/cpuinfo").read_text(), "model name") or (
        platform.processor() or platform.machine())
