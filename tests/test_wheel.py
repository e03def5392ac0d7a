"""The package as a wheel: what `pip install` gives a user who has no clone.

The wheel is built from this checkout and installed into a fresh venv (the wheel alone, --no-deps;
torch, TVM and the other dependencies are the current environment's, seen through a .pth file, so
nothing is downloaded), then run from a directory outside the clone: the shipped model and the
shipped tuning database must come from the installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What the wheel must carry for a user without a clone (paths inside it).
SHIPPED = ["tinyasr/model/pretrained/shared-int8.tac", "tinyasr/model/pretrained/shared/model.pt",
           "tinyasr/schedules/x86-64-v3/database_tuning_record.json",
           "tinyasr/schedules/x86-64-v3/database_workload.json",
           "tinyasr/schedules/x86-64-v3/device.json",
           "tinyasr/targets/native/CMakeLists.txt",
           "tinyasr/targets/native/cmake/board-sysroot.cmake",
           "tinyasr/targets/native/tinyasr-rpc-server.service",
           "tinyasr/targets/setup_sysroot.sh"]
WHEEL_MB = 16   # measured 9.4 MB: models 8.2 MB and databases (14 MB of JSON) 0.9 MB, compressed


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900,
                            **kwargs)
    assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: setuptools from this venv, nothing fetched
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(REPO)], cwd=out)
    (built,) = out.glob("tinyasr-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel; the dependencies are the current venv's."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        cwd=venv.parent)
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
               cwd=venv.parent).stdout.strip()
    # after the venv's own site-packages: the wheel's tinyasr wins over this checkout's
    # editable install, whose finder (a .pth of the current venv) is not run from here
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


@pytest.mark.slow   # builds a wheel (~1 min)
def test_wheel_carries_the_models_databases_and_sources(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in SHIPPED if name not in names]
    assert not missing, missing
    assert wheel.stat().st_size < WHEEL_MB * 1e6


@pytest.mark.slow   # builds and installs a wheel, then compiles the int8 model (minutes)
def test_installed_wheel_compiles_with_the_shipped_database(installed: Path, tmp_path: Path):
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    tinyasr = str(installed / "bin" / "tinyasr")
    version = run([tinyasr, "--version"], cwd=tmp_path, env=env).stdout
    assert version.startswith("tinyasr ")
    where = run([str(installed / "bin" / "python"), "-c",
                 "import tinyasr.model, tinyasr; print(tinyasr.model.__file__)"],
                cwd=tmp_path, env=env).stdout
    assert where.startswith(str(installed)), where     # the wheel's package, not the checkout
    site = Path(where).parent.parent
    run([tinyasr, "-q", "compile", str(site / "model" / "pretrained" / "shared-int8.tac"),
         "--target", "x86-64-v3", "--out", str(tmp_path / "out")], cwd=tmp_path, env=env)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    database = manifest["tuning_database"]
    assert database is not None, "built untuned: the wheel's database was not found"
    assert Path(database["path"]).is_relative_to(site / "schedules" / "x86-64-v3")
    assert database["tuned_functions"]
