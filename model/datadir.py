"""Kaldi-style data directories, as AISHELL-1/2 and WeNet lay them out.

A data dir holds `wav.scp` (`utt-id path`), `text` (`utt-id transcript`) and optionally
`utt2spk` (`utt-id speaker`). Relative wav paths resolve against the data dir itself, so a
corpus can be moved as a whole. Audio must be 16 kHz mono 16-bit PCM wav: anything else is
rejected (not resampled) with a message that says how to convert it, because a silent resample
in the loader would hide a data problem and cost time on every epoch.

Transcripts are kept exactly as written (any Unicode, Chinese included); normalising them is
the tokenizer's job. Every problem raises `InputError` naming the file and line at fault.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyasr.model.errors import InputError

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance. `wav` is resolved; relative paths in wav.scp resolve against the data dir."""

    uid: str
    wav: Path
    text: str
    speaker: str | None


@dataclass(frozen=True)
class _Entry:
    """One `utt-id value` line of a Kaldi table file, with where it came from for error messages."""

    uid: str
    value: str
    where: str  # "path:line"


def _read_table(path: Path, what: str) -> dict[str, _Entry]:
    """Parse a Kaldi table (`utt-id value` per line); `what` names the value in error messages."""
    if not path.is_file():
        raise InputError(f"{path}: missing (a data dir needs wav.scp and text)")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: tolerate a BOM
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    entries: dict[str, _Entry] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.strip().split(maxsplit=1)
        if len(fields) < 2:
            raise InputError(f"{where}: expected 'utt-id {what}', got {line.strip()!r} (empty {what}?)")
        uid, value = fields[0], fields[1].strip()
        if uid in entries:
            raise InputError(f"{where}: duplicate utterance id {uid!r} (first at {entries[uid].where})")
        entries[uid] = _Entry(uid, value, where)
    return entries


def _check_ids(entries: dict[str, _Entry], wavs: dict[str, _Entry], table: str) -> None:
    """Every id in `entries` must be in wav.scp, and (for `text`) every wav.scp id must be in `entries`."""
    for entry in entries.values():
        if entry.uid not in wavs:
            raise InputError(f"{entry.where}: utterance {entry.uid!r} is not in wav.scp")
    for entry in wavs.values():
        if entry.uid not in entries:
            raise InputError(f"{entry.where}: utterance {entry.uid!r} has no entry in {table}")


def _resolve_wav(entry: _Entry, data_dir: Path) -> Path:
    """The wav file a wav.scp line points to, checked to be a readable 16 kHz mono 16-bit wav."""
    if entry.value.endswith("|"):
        raise InputError(f"{entry.where}: piped commands in wav.scp are not supported; give a wav path")
    wav = (data_dir / entry.value).resolve()
    if not wav.is_file():
        raise InputError(f"{entry.where}: wav file not found: {wav}")
    _read_pcm(wav, entry.where)
    return wav


def _read_pcm(wav: Path, where: str | None) -> bytes:
    """The raw 16-bit samples of `wav`, after checking its format and that it is complete.

    `where` is the wav.scp line that named the file, put in front of every error message.
    """
    at = f"{where}: {wav}" if where else str(wav)
    try:
        with wave.open(str(wav), "rb") as reader:
            rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
            frames = reader.getnframes()
            data = reader.readframes(frames)
    except (wave.Error, EOFError, OSError) as error:
        raise InputError(f"{at}: unreadable wav ({error or 'truncated header'})") from None
    if rate != SAMPLE_RATE:
        raise InputError(
            f"{at}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz "
            f"(resample with `sox IN -r {SAMPLE_RATE} OUT`)"
        )
    if channels != 1:
        raise InputError(f"{at}: {channels} channels, expected mono (convert with `sox IN -c 1 OUT`)")
    if width != SAMPLE_WIDTH:
        raise InputError(f"{at}: {8 * width}-bit samples, expected 16-bit (convert with `sox IN -b 16 OUT`)")
    if len(data) != frames * SAMPLE_WIDTH:
        raise InputError(
            f"{at}: truncated wav (header says {frames} samples, file holds {len(data) // SAMPLE_WIDTH})"
        )
    return data


def read_data_dir(path: str | Path) -> list[Utterance]:
    """Read and validate a data dir; utterances sorted by id. Every wav is opened and checked."""
    data_dir = Path(path)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: not a data directory")
    wavs = _read_table(data_dir / "wav.scp", "path")
    if not wavs:
        raise InputError(f"{data_dir / 'wav.scp'}: no utterances")
    texts = _read_table(data_dir / "text", "transcript")
    _check_ids(texts, wavs, "text")
    speakers: dict[str, _Entry] = {}
    if (data_dir / "utt2spk").exists():
        speakers = _read_table(data_dir / "utt2spk", "speaker")
        _check_ids(speakers, wavs, "utt2spk")
    return [
        Utterance(
            uid=uid,
            wav=_resolve_wav(wavs[uid], data_dir),
            text=texts[uid].value,
            speaker=speakers[uid].value if uid in speakers else None,
        )
        for uid in sorted(wavs)
    ]


def load_wav(path: str | Path) -> np.ndarray:
    """Samples of a 16 kHz mono 16-bit wav as float32 at int16 scale (-32768..32767, as Kaldi reads them)."""
    wav = Path(path)
    if not wav.is_file():
        raise InputError(f"{wav}: wav file not found")
    return np.frombuffer(_read_pcm(wav, None), dtype="<i2").astype(np.float32)


def write_data_dir(data_dir: str | Path, utterances: list[Utterance]) -> None:
    """Write wav.scp (paths relative to `data_dir`), text and, if every utterance has one, utt2spk."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(utterances, key=lambda utterance: utterance.uid)
    tables = {
        "wav.scp": [f"{u.uid} {os.path.relpath(u.wav, data_dir)}" for u in ordered],
        "text": [f"{u.uid} {u.text}" for u in ordered],
    }
    if all(u.speaker is not None for u in ordered):
        tables["utt2spk"] = [f"{u.uid} {u.speaker}" for u in ordered]
    for name, lines in tables.items():
        (data_dir / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
