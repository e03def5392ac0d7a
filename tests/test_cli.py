"""The command line's conventions and the Python API (`import tinyasr`).

Start-up speed itself is measured, not tested (README, The command line); what is tested is
what it rests on: the parser and `import tinyasr` load no heavy module, and `transcribe --lib`
runs a deployable without torch.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyasr.model.data.datadir import load_wav
from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL, SAMPLES_DIR
from tinyasr.scripts.cli import build_parser, leaf_parsers, main

ROOT = Path(__file__).resolve().parent.parent
WAV = SAMPLES_DIR / "wavs" / "flite_awb-004270.wav"
HEAVY = ("torch", "tvm", "tvm_ffi", "numpy", "ml_dtypes", "onnx", "onnxruntime")


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter at the repository root, as a user's process would run."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, **kwargs)


def loaded_modules_check(prefixes: tuple[str, ...]) -> str:
    """Python that prints the modules of these top-level names that are really loaded (an
    entry of None in sys.modules is an import that was kept out, not a load)."""
    return ("print(sorted(n for n, m in sys.modules.items() if m is not None and "
            f"n.split('.')[0] in {prefixes!r}))")


@pytest.fixture(scope="module")
def deployable(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model compiled for this machine through the API's compile_model, with its
    static transcriber."""
    import tinyasr

    out = tmp_path_factory.mktemp("deployable") / "host"
    assert tinyasr.compile_model(model_dir, "host", out, untuned=True, static=True) == out
    return out


# --- conventions -------------------------------------------------------------------------------

def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"tinyasr {version('tinyasr')}\n"


def test_every_command_takes_quiet_and_verbose():
    leaves = leaf_parsers(build_parser())
    assert len(leaves) > 15   # data synth, board up, ... each one a leaf
    for parser in leaves:
        options = {o for action in parser._actions for o in action.option_strings}
        assert {"-q", "-v", "--quiet", "--verbose"} <= options, parser.prog


def test_verbose_details_go_to_stderr_and_results_to_stdout(capsys):
    assert main(["transcribe", "-v", "--mode", "ctc_greedy", str(WAV)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{WAV}\t") and captured.out.count("\n") == 1
    assert "model loaded in" in captured.err and f"{WAV}: 2.37 s of audio in" in captured.err
    assert main(["transcribe", "-q", "--mode", "ctc_greedy", str(WAV)]) == 0
    assert capsys.readouterr().err == ""


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        main(["transcribe", "-q", "-v", str(WAV)])
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_parser_and_the_package_import_nothing_heavy():
    """Every start builds the whole parser; every `import tinyasr.x` runs tinyasr/__init__."""
    result = run_python("import sys, tinyasr\nfrom tinyasr.scripts.cli import build_parser\n"
                        "build_parser()\n" + loaded_modules_check(HEAVY))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_rpc_test_deadline_default_is_the_modules_own():
    """The command keeps a literal copy so that its parser does not import the module."""
    from tinyasr.scripts.commands import rpc_test as command
    from tinyasr.targets import rpc_check as rpc_test

    assert command.UTTERANCE_DEADLINE == rpc_test.UTTERANCE_DEADLINE


def test_transcribe_lib_imports_no_torch(deployable: Path, capsys):
    """The command line runs a deployable on TVM's runtime alone: no torch, no TVM compiler;
    the text is what a process with all of TVM loaded prints."""
    argv = ["tinyasr", "transcribe", "--lib", str(deployable), str(WAV)]
    result = run_python(f"import sys\nsys.argv = {argv!r}\n"
                        "from tinyasr.scripts.cli import main\nrc = main()\n"
                        + loaded_modules_check(("torch", "ml_dtypes")) +
                        "\nprint('tvm.relax' in sys.modules, rc)")
    assert result.returncode == 0, result.stderr
    text, loaded, relax_and_rc = result.stdout.splitlines()
    assert loaded == "[]" and relax_and_rc == "False 0"
    assert main(argv[1:]) == 0   # in this process: torch and all of TVM loaded
    assert capsys.readouterr().out.splitlines() == [text]


def test_transcribe_with_pytorch_imports_no_tvm():
    """The PyTorch path decodes with the C++ prefix beam search through ctypes: neither TVM nor
    tvm_ffi is imported (tvm_ffi's import alone cost 0.7 s of start-up)."""
    argv = ["tinyasr", "transcribe", str(WAV)]
    result = run_python(f"import sys\nsys.argv = {argv!r}\n"
                        "from tinyasr.scripts.cli import main\nrc = main()\n"
                        + loaded_modules_check(("tvm", "tvm_ffi", "ml_dtypes")) + "\nprint(rc)")
    assert result.returncode == 0, result.stderr
    text, loaded, rc = result.stdout.splitlines()
    assert text.startswith(f"{WAV}\t") and loaded == "[]" and rc == "0"


def test_transcribe_reads_one_wav_from_stdin(deployable: Path):
    command = [sys.executable, "-m", "tinyasr.scripts.cli", "transcribe", "--lib",
               str(deployable)]
    from_file = subprocess.run([*command, str(WAV)], capture_output=True, text=True,
                               timeout=600)
    from_stdin = subprocess.run([*command, "-"], input=WAV.read_bytes(), capture_output=True,
                                timeout=600)
    assert from_file.returncode == from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout.decode() == from_file.stdout.replace(str(WAV), "-", 1)


def test_the_program_stops_quietly_when_its_reader_goes(deployable: Path):
    """`tinyasr transcribe ... | true`: the text cannot be written, so the program stops as a
    program killed by SIGPIPE does (status 141), without a traceback; and the `tinyasr` program
    (`python -m tinyasr.scripts.cli`, which ends with os._exit) prints all it has when read."""
    command = [sys.executable, "-m", "tinyasr.scripts.cli", "transcribe", "-q", "--lib",
               str(deployable), str(WAV), str(WAV)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=600)
    assert process.returncode == 141 and err == b"", err
    read = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert read.returncode == 0 and len(read.stdout.splitlines()) == 2, read.stderr


def test_transcribe_json_holds_what_it_printed(deployable: Path, tmp_path: Path, capsys):
    out = tmp_path / "new" / "texts.json"   # a parent that does not exist yet is made
    assert main(["transcribe", "--lib", str(deployable), str(WAV), str(WAV),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    report = json.loads(out.read_text())
    assert report["model"] == str(deployable)
    assert [f"{r['wav']}\t{r['text']}" for r in report["results"]] == printed
    assert all(r["audio_seconds"] > 0.5 and r["seconds"] > 0 for r in report["results"])


def test_the_static_transcriber_prints_what_transcribe_lib_prints(deployable: Path, capsys):
    """compile_model(static=True): out/tinyasr-transcribe, everything linked in, prints the
    texts `transcribe --lib` prints (the same decoding, attention rescoring of a 10-best)."""
    assert main(["transcribe", "--lib", str(deployable), str(WAV), str(WAV)]) == 0
    printed = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    run = subprocess.run([str(deployable / "tinyasr-transcribe"), str(WAV), str(WAV)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.splitlines() == printed, run.stderr


@pytest.mark.parametrize("data, message", [
    (b"", "-: no wav on stdin"),
    (b"RIFF\x00\x00\x00\x00WAVEjunk", "-: unreadable wav"),
])
def test_bad_stdin_is_one_line_naming_it(deployable: Path, data: bytes, message: str):
    result = subprocess.run([sys.executable, "-m", "tinyasr.scripts.cli", "transcribe",
                             "--lib", str(deployable), "-"], input=data, capture_output=True,
                            timeout=600)
    error = result.stderr.decode()
    assert result.returncode == 2 and error.startswith(f"tinyasr: error: {message}")
    assert error.count("\n") == 1


def test_stdin_given_twice_is_an_error(capsys):
    assert main(["transcribe", "--mode", "ctc_greedy", "-", "-"]) == 2
    assert "-: given more than once" in capsys.readouterr().err


@pytest.mark.slow
def test_tune_with_nothing_tunable_says_so_and_fails(model_dir: Path, tmp_path: Path, capsys):
    """The fbank's power spectrum is a hand-written kernel without parameters to search (unlike
    the matmul and attention templates): --ops power_spectrum selects a task MetaSchedule cannot
    tune (minutes: the task is tried)."""
    assert main(["tune", str(model_dir), "--target", "host", "--trials", "2",
                 "--work-dir", str(tmp_path / "db"), "--ops", "power_spectrum"]) == 2
    error = capsys.readouterr().err
    assert re.search(r"--ops power_spectrum: none of its \d+ tasks is tunable", error)


# --- export ------------------------------------------------------------------------------------

def test_exported_onnx_encoder_matches_pytorch(tmp_path: Path, capsys):
    """The shipped model's encoder in ONNX Runtime: CTC log-probs and encoder output within
    1e-4 of PyTorch's (measured ~1e-5) on a bundled utterance; decode.onnx loads."""
    import onnxruntime

    from tinyasr.model.decoding.recognizer import Recognizer

    assert main(["export", "onnx", str(DEFAULT_MODEL), str(tmp_path / "onnx")]) == 0
    written = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert written == [str(tmp_path / "onnx" / name) for name in ("encode.onnx", "decode.onnx")]
    samples = load_wav(WAV)
    encoder = onnxruntime.InferenceSession(written[0], providers=["CPUExecutionProvider"])
    log_probs, encoded = encoder.run(None, {"waveform": samples[None]})
    model = Recognizer.load(DEFAULT_MODEL).model
    with torch.no_grad():
        reference_log_probs, reference_encoded = model.ctc_log_probs(
            torch.from_numpy(samples)[None])
    np.testing.assert_allclose(log_probs, reference_log_probs.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(encoded, reference_encoded.numpy(), atol=1e-4, rtol=0)
    decoder = onnxruntime.InferenceSession(written[1], providers=["CPUExecutionProvider"])
    assert [i.name for i in decoder.get_inputs()] == ["tokens", "depths", "ancestors", "history",
                                                      "memory"]


def test_export_onnx_names_a_bad_model(tmp_path: Path, capsys):
    assert main(["export", "onnx", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err


# --- Python API --------------------------------------------------------------------------------

def readme_api_example() -> str:
    """The first python block of the README's Python API section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_api_example_runs():
    example = readme_api_example()
    assert len(example.strip().splitlines()) <= 5
    result = run_python(example)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.strip() for line in lines)


def test_every_exported_name_resolves():
    import tinyasr

    assert sorted(tinyasr.__all__) == sorted([*tinyasr._EXPORTS, "__version__"])
    for name in tinyasr.__all__:
        assert getattr(tinyasr, name) is not None, name
    assert "load_recognizer" in dir(tinyasr)
    with pytest.raises(AttributeError):
        tinyasr.no_such_name  # noqa: B018


def test_api_transcribes_paths_and_samples_as_the_cli_does(deployable: Path, capsys):
    import tinyasr

    compiled = tinyasr.load_deployable(deployable, mode="ctc_prefix_beam", beam=4)
    assert isinstance(compiled, tinyasr.Recognizer)
    text = tinyasr.transcribe(WAV, compiled)
    assert text == compiled.transcribe(tinyasr.load_wav(WAV))
    assert main(["transcribe", "--lib", str(deployable), "--mode", "ctc_prefix_beam",
                 "--beam", "4", str(WAV)]) == 0
    assert capsys.readouterr().out == f"{WAV}\t{text}\n"


def test_api_bad_arguments_raise_input_error(tmp_path: Path):
    import tinyasr

    with pytest.raises(tinyasr.InputError, match="mode 'fast'"):
        tinyasr.load_recognizer(mode="fast")
    with pytest.raises(tinyasr.InputError, match=str(tmp_path / "nothing")):
        tinyasr.load_recognizer(tmp_path / "nothing")
    with pytest.raises(tinyasr.InputError, match="whisper_beam: must be at least 1, got 0"):
        tinyasr.load_recognizer("whisper-tiny.en", whisper_beam=0)
    with pytest.raises(tinyasr.InputError, match="whisper_beam: must be at least 1, got 0"):
        tinyasr.load_deployable(tmp_path / "nothing", whisper_beam=0)
    with pytest.raises(tinyasr.InputError, match="unknown target|no-such-board"):
        tinyasr.compile_model(None, "no-such-board", tmp_path / "out")
    with pytest.raises(tinyasr.InputError, match="int8: .* is a SAN-M model"):
        tinyasr.compile_model(None, "host", tmp_path / "out", int8=True)
    assert "host" in tinyasr.boards()

