"""The board runtime runs on glibc 2.31 images (Raspberry Pi OS Bullseye, older Debian and Ubuntu
on RISC-V boards), not only on the Debian 12 whose cross toolchains build it.

Each file of each architecture's runtime is read with objdump: the newest GLIBC_, GLIBCXX_ and
CXXABI_ symbol versions it requires must be ones Debian 11 (glibc 2.31, libstdc++ 10) provides.
Then the programs run under qemu-user with Debian 11's libraries as the board's own (the
sysroot targets/setup_sysroot.sh unpacks): a deployable transcribes there exactly as under
Debian 12's, and a runtime built against Debian 12's glibc would not even start.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tinyasr.compile.deployable import build_deployable
from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.network.pretrained_paths import (
    COMPRESSED_MODEL,
    DEFAULT_MODEL,
    SAMPLES_DIR,
)
from tinyasr.targets.boards import Board, get_board
from tinyasr.targets.farm import emulator_prefix
from tinyasr.targets.native_build import (
    BOARD_SYSROOT,
    build_runtime,
    required_versions,
    runtime_floor,
    version_key,
)

# What Debian 11 ships: glibc 2.31; libstdc++ of GCC 10 (GLIBCXX_3.4.28, CXXABI_1.3.12).
DEBIAN_11 = {"GLIBC": "GLIBC_2.31", "GLIBCXX": "GLIBCXX_3.4.28", "CXXABI": "CXXABI_1.3.12"}
BOARDS = ["rpi4", "visionfive2"]   # one per architecture: aarch64, riscv64
# as tests/test_tinyasr_run.py runs them: int8 on the Pi, fp32 on the scalar rv64gc board
BOARD_MODELS = {"rpi4": COMPRESSED_MODEL, "visionfive2": DEFAULT_MODEL}


def on_debian_11(board: Board) -> list[str]:
    """qemu-user for `board` with Debian 11's libraries as the board's /lib."""
    qemu, _, _, *cpu = emulator_prefix(board)
    return [qemu, "-L", str(BOARD_SYSROOT / "usr" / f"{board.arch}-linux-gnu"), *cpu]


@pytest.mark.parametrize("name", BOARDS)
def test_every_runtime_file_requires_at_most_what_debian_11_ships(name: str):
    board = get_board(name)
    runtime = build_runtime(board)
    files = list(runtime.manifest["sizes"])
    assert {"bin/tinyasr-run", "bin/tinyasr-rpc-server", "lib/libtvm_runtime.so",
            "lib/libtvm_ffi.so"} <= set(files)
    for file in files:
        versions = required_versions(runtime.directory / file, board.arch)
        assert "GLIBC" in versions, (file, versions)   # objdump read its dynamic symbols
        for family, newest_allowed in DEBIAN_11.items():
            if family in versions:
                assert version_key(versions[family]) <= version_key(newest_allowed), \
                    (file, versions)
        assert runtime.manifest["requires"][file] == versions
    assert version_key(runtime_floor(runtime)["GLIBC"]) <= version_key(DEBIAN_11["GLIBC"])


def _shortest_sample() -> Path:
    return min((utterance.wav for utterance in read_data_dir(SAMPLES_DIR)),
               key=lambda wav: wav.stat().st_size)


@pytest.mark.slow   # compiles a model for each board and runs it under qemu twice (~1.5 min)
@pytest.mark.parametrize("name", BOARDS)
def test_a_deployable_transcribes_on_debian_11_as_on_debian_12(name: str, tmp_path: Path):
    board = get_board(name)
    deployable = tmp_path / name
    build_deployable(BOARD_MODELS[name], board, deployable)
    transcriber = str(build_runtime(board).transcriber)
    wav = str(_shortest_sample())
    runs = [subprocess.run([*prefix, transcriber, str(deployable), wav], capture_output=True,
                           text=True, timeout=600)
            for prefix in [on_debian_11(board), emulator_prefix(board)]]
    for run in runs:
        assert run.returncode == 0, run.stderr
    old, new = (run.stdout for run in runs)
    assert old.strip() and old == new


@pytest.mark.parametrize("name", BOARDS)
def test_the_rpc_server_starts_on_debian_11(name: str):
    board = get_board(name)
    run = subprocess.run([*on_debian_11(board), str(build_runtime(board).server), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "usage: tinyasr-rpc-server" in run.stdout, run.stderr
