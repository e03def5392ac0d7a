"""Kaldi data dirs: reading, and a one-line error naming file and line for every kind of bad
input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import SAMPLE_RATE, load_wav, read_data_dir
from tinyasr.scripts.cli import main


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real speech from espeak-ng in the good format and in each wrong one."""
    root = tmp_path_factory.mktemp("speech")
    raw = root / "raw.wav"  # espeak-ng writes 22050 Hz
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), "turn on the lights"], check=True)
    variants = {"good": ["-r", "16000"], "stereo": ["-r", "16000", "-c", "2"],
                "8bit": ["-r", "16000", "-b", "8"]}
    wavs = {"22khz": raw}
    for name, options in variants.items():
        wavs[name] = root / f"{name}.wav"
        subprocess.run(["sox", str(raw), *options, str(wavs[name])], check=True)
    wavs["truncated"] = root / "truncated.wav"
    wavs["truncated"].write_bytes(wavs["good"].read_bytes()[:-1000])
    wavs["garbage"] = root / "garbage.wav"
    wavs["garbage"].write_bytes(b"this is not a wav file at all")
    return wavs


def make_dir(root: Path, wav_scp: str, text: str | None, utt2spk: str | None = None) -> Path:
    """A data dir at `root/data` with the given table contents (None: file left out)."""
    data = root / "data"
    data.mkdir()
    for name, content in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk)):
        if content is not None:
            (data / name).write_text(content, encoding="utf-8")
    return data


def test_reads_a_good_dir_with_relative_paths_and_unicode(tmp_path: Path,
                                                          speech: dict[str, Path]) -> None:
    data = make_dir(tmp_path, "\ufeffb ../b.wav\r\na " + str(speech["good"]) + "\n",
                    "a 打开客厅的灯\nb turn on the lights\n", "a alice\nb bob\n")
    shutil.copy(speech["good"], tmp_path / "b.wav")
    utterances = read_data_dir(data)
    assert [u.uid for u in utterances] == ["a", "b"]
    assert utterances[0].text == "打开客厅的灯"
    assert utterances[1].wav == (tmp_path / "b.wav").resolve()
    assert [u.speaker for u in utterances] == ["alice", "bob"]


def test_load_wav_gives_int16_scale_float32(speech: dict[str, Path]) -> None:
    samples = load_wav(speech["good"])
    assert samples.dtype == np.float32
    assert 0.5 * SAMPLE_RATE < len(samples) < 3 * SAMPLE_RATE
    assert 1000 < np.abs(samples).max() <= 32768
    assert np.array_equal(samples, np.round(samples))


BAD_WAVS = {
    "22khz": "sample rate 22050 Hz, expected 16000 Hz (resample with `sox IN -r 16000 OUT`)",
    "stereo": "2 channels, expected mono",
    "8bit": "8-bit samples, expected 16-bit",
    "truncated": "truncated wav",
    "garbage": "unreadable wav",
}


@pytest.mark.parametrize("kind", sorted(BAD_WAVS))
def test_bad_wav_names_the_line(tmp_path: Path, speech: dict[str, Path], kind: str) -> None:
    data = make_dir(tmp_path, f"a {speech['good']}\nb {speech[kind]}\n", "a hello\nb world\n")
    with pytest.raises(InputError) as error:
        read_data_dir(data)
    assert str(error.value).startswith(f"{data / 'wav.scp'}:2: {speech[kind]}: ")
    assert BAD_WAVS[kind] in str(error.value)
    with pytest.raises(InputError, match=str(speech[kind])):
        load_wav(speech[kind])


def test_missing_wav_file(tmp_path: Path) -> None:
    data = make_dir(tmp_path, "a nowhere.wav\n", "a hello\n")
    with pytest.raises(InputError, match=r"wav.scp:1: wav file not found: .*nowhere.wav"):
        read_data_dir(data)


@pytest.mark.parametrize(
    ("wav_scp", "text", "message"),
    [
        (None, "a hello\n", r"wav.scp: missing"),
        ("\n", "", r"wav.scp: no utterances"),
        ("a {good}\n", None, r"/text: missing"),
        ("a {good}\nb\n", "a hello\nb hi\n", r"wav.scp:2: expected 'utt-id path'"),
        ("a {good}\nb {good}\n", "a hello\nb  \n",
         r"text:2: expected 'utt-id transcript', got 'b' \(empty transcript\?\)"),
        ("a {good}\nb {good}\na {good}\n", "a hello\nb hi\n",
         r"wav.scp:3: duplicate utterance id 'a' \(first at .*wav.scp:1\)"),
        ("a {good}\n", "a hello\na again\n",
         r"text:2: duplicate utterance id 'a' \(first at .*text:1\)"),
        ("a {good}\n", "a hello\nz stray\n", r"text:2: utterance 'z' is not in wav.scp"),
        ("a {good}\nb {good}\n", "a hello\n", r"wav.scp:2: utterance 'b' has no entry in text"),
        ("a {good}\n", "a hello\n", r"utt2spk:1: utterance 'q' is not in wav.scp"),
    ],
)
def test_bad_tables(tmp_path: Path, speech: dict[str, Path], wav_scp: str | None, text: str | None,
                    message: str) -> None:
    def fill(table: str | None) -> str | None:
        return None if table is None else table.format(good=speech["good"])

    utt2spk = "q nobody\n" if "utt2spk" in message else None
    data = make_dir(tmp_path, fill(wav_scp), text, utt2spk)
    with pytest.raises(InputError, match=message):
        read_data_dir(data)


def test_cli_reports_one_line_and_exit_2(tmp_path: Path, speech: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = make_dir(tmp_path, f"a {speech['22khz']}\n", "a hello\n")
    assert main(["data", "check", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"tinyasr: error: {data / 'wav.scp'}:1: ")
    assert "Traceback" not in err


def test_cli_check_prints_stats(tmp_path: Path, speech: dict[str, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    data = make_dir(tmp_path, f"a {speech['good']}\nb {speech['good']}\n", "a hello\nb world\n",
                    "a x\nb y\n")
    assert main(["data", "check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "2 utterances" in out and "2 speakers" in out
