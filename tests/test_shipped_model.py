"""The shipped model: its recorded CER holds, decoding modes agree, the commands work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinyasr.model.datadir import load_wav, read_data_dir
from tinyasr.model.evaluate import evaluate
from tinyasr.model.model_dir import COMPRESSED_MODEL, DEFAULT_MODEL, PRETRAINED_DIR, SAMPLES_DIR
from tinyasr.model.recognizer import DecodeMode, DecodeOptions, Recognizer


def recorded_samples_cer(model: Path) -> float:
    """The bundled-samples CER that RESULTS.md states for a shipped model."""
    text = (PRETRAINED_DIR / "RESULTS.md").read_text()
    match = re.search(rf"`{re.escape(model.name)}/?` bundled samples CER: ([0-9.]+)%", text)
    assert match, f"RESULTS.md must state `{model.name}` bundled samples CER: X%"
    return float(match.group(1))


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load(DEFAULT_MODEL)


@pytest.mark.parametrize("model", [DEFAULT_MODEL, COMPRESSED_MODEL], ids=lambda m: m.name)
def test_shipped_models_reproduce_their_recorded_cer(model: Path):
    result = evaluate(Recognizer.load(model), read_data_dir(SAMPLES_DIR))
    assert result.cer.rate == pytest.approx(recorded_samples_cer(model), abs=0.5)


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
    assert f"CER {recorded_samples_cer(COMPRESSED_MODEL):.2f}%" in result.stdout
    assert "real-time factor" in result.stdout
    assert "1.01 MB on disk" in result.stdout


def test_transcribe_takes_a_compressed_model_first():
    wav = read_data_dir(SAMPLES_DIR)[0].wav
    result = run_cli("transcribe", str(COMPRESSED_MODEL), str(wav))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{wav}\t")
