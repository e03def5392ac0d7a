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
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyasr.model.common.errors import InputError

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance. `wav` is resolved; relative paths in wav.scp resolve against the
    data dir."""

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
            raise InputError(f"{where}: expected 'utt-id {what}', "
                             f"got {line.strip()!r} (empty {what}?)")
        uid, value = fields[0], fields[1].strip()
        if uid in entries:
            raise InputError(f"{where}: duplicate utterance id {uid!r} "
                             f"(first at {entries[uid].where})")
        entries[uid] = _Entry(uid, value, where)
    return entries


def _check_ids(entries: dict[str, _Entry], wavs: dict[str, _Entry], table: str) -> None:
    """Every id in `entries` must be in wav.scp, and (for `text`) every wav.scp id must be in
    `entries`."""
    for entry in entries.values():
        if entry.uid not in wavs:
            raise InputError(f"{entry.where}: utterance {entry.uid!r} is not in wav.scp")
    for entry in wavs.values():
        if entry.uid not in entries:
            raise InputError(f"{entry.where}: utterance {entry.uid!r} has no entry in {table}")


def _resolve_wav(entry: _Entry, data_dir: Path) -> Path:
    """The wav file a wav.scp line points to, checked to be a readable 16 kHz mono 16-bit wav."""
    if entry.value.endswith("|"):
        raise InputError(f"{entry.where}: piped commands in wav.scp are not supported; "
                         "give a wav path")
    wav = (data_dir / entry.value).resolve()
    if not wav.is_file():
        raise InputError(f"{entry.where}: wav file not found: {wav}")
    _checked_format(wav, entry.where)
    return wav


@dataclass(frozen=True)
class WavFormat:
    """Where a PCM wav's samples lie and what they are, from its RIFF header alone."""

    rate: int
    channels: int
    width: int         # bytes per sample
    data_offset: int   # file offset of the first sample
    data_bytes: int    # length of the samples in bytes

    @property
    def samples(self) -> int:
        return self.data_bytes // (self.width * self.channels)


WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# The KSDATAFORMAT_SUBTYPE GUID's bytes after its first two (which hold the format tag).
_SUBTYPE_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_UNKNOWN_SIZE = 0xFFFFFFFF   # a data size that a writer streaming to a pipe could not fill in


def _parse_fmt(body: bytes, at: str) -> tuple[int, int, int]:
    """(rate, channels, bytes per sample) of a PCM `fmt ` chunk body; anything else: InputError."""
    if len(body) < 16:
        raise InputError(f"{at}: unreadable wav (fmt chunk of {len(body)} bytes, need 16)")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < 40 or struct.unpack_from("<H", body, 16)[0] < 22:
            raise InputError(f"{at}: unreadable wav (extensible fmt chunk too short)")
        subformat = body[24:40]
        if subformat[2:] != _SUBTYPE_GUID_TAIL:
            raise InputError(f"{at}: unreadable wav (unknown extensible sub-format)")
        tag = struct.unpack_from("<H", subformat)[0]
    if tag != WAVE_FORMAT_PCM:
        kind = {3: "float", 6: "A-law", 7: "mu-law"}.get(tag, f"format tag {tag}")
        raise InputError(f"{at}: {kind} samples, expected 16-bit PCM "
                         "(convert with `sox IN -e signed-integer -b 16 OUT`)")
    if channels < 1 or bits < 1:
        raise InputError(f"{at}: unreadable wav ({channels} channels of {bits}-bit samples)")
    return rate, channels, -(-bits // 8)


def read_wav_format(wav: Path, where: str | None = None) -> WavFormat:
    """The format and sample location of a RIFF/WAVE file, read from its chunk headers only.

    Chunks are walked from the start: `fmt ` must be PCM (plain or WAVE_FORMAT_EXTENSIBLE with
    the PCM sub-format), the first `data` chunk ends the walk (whatever follows it is ignored),
    other chunks (LIST, fact, junk, ...) are skipped. Every size is bounded by the file's own
    size, so a corrupt header is an InputError naming the file, never a huge read. `where` is
    the wav.scp line that named the file, put in front of every message."""
    at = f"{where}: {wav}" if where else str(wav)
    try:
        with open(wav, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise InputError(f"{at}: unreadable wav (no RIFF/WAVE header)")
            position, fmt = 12, None
            while True:
                handle.seek(position)
                chunk = handle.read(8)
                if len(chunk) < 8:
                    missing = "data chunk" if fmt else "fmt chunk"
                    raise InputError(f"{at}: unreadable wav (no {missing}; truncated header?)")
                name, length = chunk[:4], struct.unpack_from("<I", chunk, 4)[0]
                body_start = position + 8
                if name == b"data":
                    if fmt is None:
                        raise InputError(f"{at}: unreadable wav (data chunk before fmt chunk)")
                    rate, channels, width = fmt
                    available = size - body_start
                    if length == _UNKNOWN_SIZE:
                        length = available
                    if length > available:
                        raise InputError(
                            f"{at}: truncated wav (header says {length // width // channels} "
                            f"samples, file holds {available // width // channels})")
                    if length % (width * channels):
                        raise InputError(
                            f"{at}: truncated wav ({length} data bytes is not a whole number "
                            f"of {8 * width}-bit samples)")
                    return WavFormat(rate, channels, width, body_start, length)
                if length > size - body_start:
                    raise InputError(f"{at}: unreadable wav (chunk {name!r} of {length} bytes "
                                     "runs past the end of the file)")
                if name == b"fmt ":
                    fmt = _parse_fmt(handle.read(min(length, 64)), at)   # 40 at most used
                position = body_start + length + (length & 1)   # chunks are word-aligned
    except OSError as error:
        raise InputError(f"{at}: unreadable wav ({error.strerror or error})") from None


def _checked_format(wav: Path, where: str | None) -> WavFormat:
    """The wav's format, checked to be 16 kHz mono 16-bit."""
    at = f"{where}: {wav}" if where else str(wav)
    found = read_wav_format(wav, where)
    if found.rate != SAMPLE_RATE:
        raise InputError(
            f"{at}: sample rate {found.rate} Hz, expected {SAMPLE_RATE} Hz "
            f"(resample with `sox IN -r {SAMPLE_RATE} OUT`)"
        )
    if found.channels != 1:
        raise InputError(f"{at}: {found.channels} channels, expected mono "
                         "(convert with `sox IN -c 1 OUT`)")
    if found.width != SAMPLE_WIDTH:
        raise InputError(f"{at}: {8 * found.width}-bit samples, expected 16-bit "
                         "(convert with `sox IN -b 16 OUT`)")
    return found


def _read_pcm(wav: Path, where: str | None) -> bytes:
    """The raw 16-bit samples of `wav`, after checking its format and that it is complete.

    `where` is the wav.scp line that named the file, put in front of every error message.
    """
    found = _checked_format(wav, where)
    try:
        with open(wav, "rb") as handle:
            handle.seek(found.data_offset)
            data = handle.read(found.data_bytes)
    except OSError as error:
        raise InputError(f"{where + ': ' if where else ''}{wav}: unreadable wav "
                         f"({error.strerror or error})") from None
    if len(data) != found.data_bytes:   # the file shrank since its header was read
        raise InputError(f"{where + ': ' if where else ''}{wav}: truncated wav")
    return data


def wav_samples(path: str | Path) -> int:
    """Samples in a 16 kHz mono 16-bit wav, from its header (the file is checked, not read)."""
    return _checked_format(Path(path), None).samples


def read_data_dir(path: str | Path) -> list[Utterance]:
    """Read and validate a data dir; utterances sorted by id. Every wav's header is checked."""
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


def check_wav(path: str | os.PathLike[str]) -> None:
    """A 16 kHz mono 16-bit wav file, checked from its header (the samples are not read)."""
    wav = Path(path)
    if not wav.is_file():
        raise InputError(f"{wav}: wav file not found")
    _checked_format(wav, None)


def load_wav(path: str | os.PathLike[str]) -> np.ndarray:
    """Samples of a 16 kHz mono 16-bit wav as float32 at int16 scale (-32768..32767, as Kaldi
    reads them)."""
    wav = Path(path)
    if not wav.is_file():
        raise InputError(f"{wav}: wav file not found")
    return np.frombuffer(_read_pcm(wav, None), dtype="<i2").astype(np.float32)


def write_data_dir(data_dir: str | Path, utterances: list[Utterance]) -> None:
    """Write wav.scp (paths relative to `data_dir`), text and, if every utterance has one,
    utt2spk."""
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
