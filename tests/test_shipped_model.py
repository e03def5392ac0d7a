"""The shipped model: its recorded CER holds, decoding modes agree, the commands work."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.decoding.evaluate import evaluate
from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
from tinyasr.model.decoding.recognizer import Recognizer
from tinyasr.model.network.pretrained_paths import (
    COMPRESSED_MODEL,
    DEFAULT_MODEL,
    PRETRAINED_DIR,
    SAMPLES_DIR,
)

SPARSE_MODEL = PRETRAINED_DIR / "shared-sparse-int8.tac"
RECORDED = json.loads((PRETRAINED_DIR / "samples-cer.json").read_text())


def recorded_samples_cer(model: Path) -> tuple[float, float]:
    """The bundled-samples CER recorded for a shipped model, and the tolerance (in CER points)
    that holds on any CPU: samples-cer.json says why int8 and fp32 models differ there."""
    recorded = RECORDED["models"][model.name]
    kind = "int8" if "int8" in model.name else "fp32"
    tolerance = 100 * RECORDED["tolerance_errors"][kind] / RECORDED["reference_characters"]
    return recorded["cer"], tolerance


def printed_cer(output: str) -> float:
    match = re.search(r"^CER ([0-9.]+)%", output, re.MULTILINE)
    assert match, output
    return float(match.group(1))


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load(DEFAULT_MODEL)


@pytest.mark.parametrize("model", [DEFAULT_MODEL, COMPRESSED_MODEL, SPARSE_MODEL],
                         ids=lambda m: m.name)
def test_shipped_models_reproduce_their_recorded_cer(model: Path):
    result = evaluate(Recognizer.load(model), read_data_dir(SAMPLES_DIR))
    recorded, tolerance = recorded_samples_cer(model)
    assert result.cer.rate == pytest.approx(recorded, abs=tolerance)


def test_decoding_modes_agree_on_an_easy_utterance(recognizer: Recognizer):
    utterances = read_data_dir(SAMPLES_DIR)
    greedy = Recognizer(recognizer.model, recognizer.tokenizer,
                        DecodeOptions(DecodeMode.CTC_GREEDY))
    easy = next(u for u in utterances if greedy.transcribe(load_wav(u.wav)) == u.text)
    samples = load_wav(easy.wav)
    for mode in DecodeMode:
        decoder = Recognizer(recognizer.model, recognizer.tokenizer, DecodeOptions(mode))
        assert decoder.transcribe(samples) == easy.text, mode


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyasr.scripts.cli", *args],
                          capture_output=True, text=True, timeout=300)


def test_transcribe_command_prints_each_file():
    utterance = read_data_dir(SAMPLES_DIR)[0]
    result = run_cli("transcribe", str(utterance.wav))
    assert result.returncode == 0, result.stderr
    path, text = result.stdout.rstrip("\n").split("\t")
    assert path == str(utterance.wav) and text


def test_transcribe_names_a_bad_file(tmp_path):
    missing = tmp_path / "nothing.wav"
    result = run_cli("transcribe", str(missing))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_the_int8_model_and_prints_text_cer_and_timing():
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    recorded, tolerance = recorded_samples_cer(COMPRESSED_MODEL)
    assert printed_cer(result.stdout) == pytest.approx(recorded, abs=tolerance)
    assert "real-time factor" in result.stdout
    assert "1.01 MB on disk" in result.stdout


def test_transcribe_takes_a_compressed_model_first():
    wav = read_data_dir(SAMPLES_DIR)[0].wav
    result = run_cli("transcribe", str(COMPRESSED_MODEL), str(wav))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{wav}\t")
