"""The command line's conventions: -q and -v before or after any command, progress on stderr
and results on stdout, and `compile` saying phase by phase where it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyasr.model.common.progress import verbosity
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.scripts.cli import main

COMPILE_PHASES = ["import", "layout", "sparse", "quantize", "dense", "weights", "legalize",
                  "schedule", "lower"]


@pytest.mark.parametrize("argv, level", [
    (["-q", "data", "check", str(SAMPLES_DIR)], -1),
    (["data", "check", str(SAMPLES_DIR), "-q"], -1),
    (["-v", "data", "check", str(SAMPLES_DIR)], 1),
    (["-v", "data", "check", str(SAMPLES_DIR), "-v"], 2),
    (["data", "check", str(SAMPLES_DIR)], 0),
])
def test_quiet_and_verbose_before_or_after_the_command(argv: list[str], level: int, capsys):
    assert main(argv) == 0
    assert verbosity() == level
    assert capsys.readouterr().out   # the results, whatever the level


def test_quiet_and_verbose_together_is_one_line(capsys):
    assert main(["-q", "data", "check", str(SAMPLES_DIR), "-v"]) == 2
    assert capsys.readouterr().err.strip() == "tinyasr: error: -q and -v: give one of them"


@pytest.mark.slow   # two compiles of the smallest model (~1 min)
def test_compile_reports_each_phase_on_stderr_unless_quiet(model_dir: Path, tmp_path: Path,
                                                           capfd):
    assert main(["compile", str(model_dir), "--target", "host", "--out",
                 str(tmp_path / "out"), "--untuned"]) == 0
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("compile: ")]
    assert [line.split()[1] for line in lines] == [*COMPILE_PHASES, "build"], err
    assert "compile:" not in out and f"{tmp_path / 'out'}: host" in out
    assert main(["compile", str(model_dir), "--target", "host", "--out",
                 str(tmp_path / "out"), "--untuned", "--force", "-q"]) == 0
    out, err = capfd.readouterr()
    assert "compile:" not in err and f"{tmp_path / 'out'}: host" in out
