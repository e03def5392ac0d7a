"""The real-speech English set (model/pretrained/realspeech): it reads as a data dir, every
utterance has its source in the README, and `text` is the README's package transcript after
the scoring normalization."""

from __future__ import annotations

import re

import pytest

from tinyasr.model.data.datadir import SAMPLE_RATE, read_data_dir, wav_samples
from tinyasr.model.decoding.spoken_form import normalize, number_words
from tinyasr.model.network.pretrained_paths import REAL_SPEECH_DIR

COLUMNS = ["utterance", "speaker", "style", "s", "package", "file in package", "trim",
           "sha256 of file (first 12)", "licence", "transcript as the package states it"]


def readme_rows() -> dict[str, dict[str, str]]:
    lines = (REAL_SPEECH_DIR / "README.md").read_text(encoding="utf-8").splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| utterance |"))
    assert [c.strip() for c in lines[header].strip("|").split("|")] == COLUMNS
    rows = {}
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(COLUMNS), line
        rows[cells[0]] = dict(zip(COLUMNS, cells, strict=True))
    return rows


def test_reads_as_a_data_dir():
    utterances = read_data_dir(REAL_SPEECH_DIR)
    assert len(utterances) >= 10
    seconds = sum(wav_samples(u.wav) for u in utterances) / SAMPLE_RATE
    assert seconds >= 60
    assert len({u.speaker for u in utterances}) >= 4
    scp = (REAL_SPEECH_DIR / "wav.scp").read_text(encoding="utf-8").split("\n")
    assert all(line.split()[1] == f"wavs/{line.split()[0]}.wav" for line in scp if line)
    assert (sorted(p.stem for p in (REAL_SPEECH_DIR / "wavs").iterdir())
            == [u.uid for u in utterances])


def test_readme_names_a_source_for_every_utterance():
    rows = readme_rows()
    utterances = read_data_dir(REAL_SPEECH_DIR)
    assert sorted(rows) == [u.uid for u in utterances]
    for u in utterances:
        row = rows[u.uid]
        assert re.fullmatch(r"[a-z0-9.-]+==[0-9][0-9.]*", row["package"]), row
        assert row["file in package"] and row["licence"] and row["speaker"] == u.speaker
        assert re.fullmatch(r"[0-9a-f]{12}", row["sha256 of file (first 12)"])
        assert abs(float(row["s"]) - wav_samples(u.wav) / SAMPLE_RATE) < 0.01
        assert u.text == normalize(row["transcript as the package states it"])


@pytest.mark.parametrize("raw, expected", [
    ("HE BEGAN A CONFUSED COMPLAINT", "he began a confused complaint"),
    ("Feed'st thy light's flame with self-substantial fuel,",
     "feed'st thy light's flame with self substantial fuel"),
    ("We\u2019re just, you know... 'er", "we're just you know er"),
    ("montreal <unk> [laughter] {CG} aligner", "montreal aligner"),
    ("I have 1,000 thoughts, 6.", "i have one thousand thoughts six"),
    ("3.5% in 2024, 007", "three point five percent in two thousand twenty four zero zero seven"),
])
def test_normalize(raw: str, expected: str):
    assert normalize(raw) == expected
    assert normalize(expected) == expected


def test_number_words():
    assert [number_words(n) for n in (0, 13, 40, 99, 100, 115, 1000, 1_000_001)] == [
        "zero", "thirteen", "forty", "ninety nine", "one hundred", "one hundred fifteen",
        "one thousand", "one million one"]
