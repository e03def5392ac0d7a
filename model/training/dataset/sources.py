"""Where training utterances come from: a Kaldi data dir or a list of tar shards, read as one
stream of `Entry`s (id, transcript, length) without decoding any audio.

A Kaldi data dir's tables (ids, paths, transcripts) are read into memory once, a few hundred
bytes per utterance; its wavs are opened one at a time, the header when the stream is planned
and the samples when the utterance is trained on. A shard dir (`tinyasr data shard`) holds
`shards.list` (one tar per line, relative paths resolving against the list's folder) and
`text`; each tar holds `UTT.txt` (the transcript) and `UTT.wav` per utterance, in that order,
as WeNet's shards do. Shards are read member by member: only one utterance's audio is in memory.

A problem with one utterance (an unreadable, truncated or mis-formatted wav, a missing
transcript, a torn tar) raises `BadUtterance` naming where (`wav.scp:LINE`, `SHARD.tar:MEMBER`):
the stream skips it and counts it. Problems with the corpus as a whole (no wav.scp, an empty
shard list) are `InputError`s, as for every other input.
"""

from __future__ import annotations

import io
import random
import tarfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import SAMPLE_RATE, SAMPLE_WIDTH, load_wav

SHARD_LIST = "shards.list"
TEXT = "text"


class BadUtterance(Exception):
    """One utterance cannot be used; the message starts with where it is. `uid` is its id
    where the corpus knows it (None for a torn shard)."""

    def __init__(self, message: str, uid: str | None = None):
        super().__init__(message)
        self.uid = uid


@dataclass(frozen=True)
class Entry:
    """One utterance, planned but not read: `samples` from the wav header."""

    uid: str
    text: str
    samples: int
    where: str        # wav.scp:LINE or SHARD.tar:MEMBER, for messages
    path: str         # the wav, or the shard holding it
    offset: int = -1  # byte offset of the wav inside the shard; -1 for a wav file
    size: int = 0


def _read_table(path: Path) -> list[tuple[str, str, int]]:
    """`utt-id value` lines as (id, value, line number); a line without a value is skipped
    here and reported as a bad utterance when its id comes up."""
    if not path.is_file():
        raise InputError(f"{path}: missing (a data dir needs wav.scp and text)")
    rows = []
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.strip().split(maxsplit=1)
                if fields:
                    rows.append((fields[0], fields[1].strip() if len(fields) > 1 else "", number))
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return rows


def _refuse_duplicates(path: Path, rows: list[tuple[str, str, int]]) -> None:
    """An id on two lines of a table is a corpus error (which line is meant?), not a bad
    utterance to skip."""
    first: dict[str, int] = {}
    for uid, _, number in rows:
        if uid in first:
            raise InputError(f"{path}:{number}: duplicate utterance id {uid!r} "
                             f"(first at {path}:{first[uid]})")
        first[uid] = number


def check_format(reader: wave.Wave_read, where: str) -> int:
    """Samples in a wav, after checking it is 16 kHz mono 16-bit."""
    rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
    if rate != SAMPLE_RATE or channels != 1 or width != SAMPLE_WIDTH:
        raise BadUtterance(f"{where}: {rate} Hz, {channels} channel(s), {8 * width}-bit; "
                           f"expected {SAMPLE_RATE} Hz mono 16-bit")
    return reader.getnframes()


class Corpus:
    """The training split: `entries(epoch)` plans the epoch's stream, `load(entry)` reads one
    utterance's samples (int16-scale float32)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @staticmethod
    def open(path: Path) -> Corpus:
        path = Path(path)
        if (path / SHARD_LIST).is_file():
            return ShardCorpus(path)
        if not path.is_dir():
            raise InputError(f"{path}: not a data directory")
        return KaldiCorpus(path)

    def texts(self) -> Iterator[str]:
        raise NotImplementedError

    def ids(self) -> list[str]:
        """Every utterance id, in the corpus's own order."""
        raise NotImplementedError

    def sample(self, count: int, seed: int) -> Corpus:
        """A seeded sample of `count` utterances, streamed as this corpus streams them (the whole
        corpus when it has no more than `count`)."""
        ids = self.ids()
        if count >= len(ids):
            return self
        return SampledCorpus(self, random.Random(seed).sample(ids, count))

    def __len__(self) -> int:
        raise NotImplementedError

    def entries(self, seed: int, epoch: int) -> Iterator[Entry | BadUtterance]:
        raise NotImplementedError

    def load(self, entry: Entry) -> np.ndarray:
        raise NotImplementedError

    def first(self, count: int, seed: int) -> list[Entry]:
        """A seeded sample of `count` readable utterances (for CMVN statistics)."""
        raise NotImplementedError


class KaldiCorpus(Corpus):
    def __init__(self, path: Path):
        super().__init__(path)
        wav_scp = self.path / "wav.scp"
        rows = _read_table(wav_scp)
        if not rows:
            raise InputError(f"{wav_scp}: no utterances")
        _refuse_duplicates(wav_scp, rows)
        texts = _read_table(self.path / TEXT)
        _refuse_duplicates(self.path / TEXT, texts)
        self.texts_by_id = {uid: text for uid, text, _ in texts}
        # Sorted by id, as read_data_dir returns them: the epoch shuffles start from one order.
        self.rows = sorted(rows, key=lambda row: row[0])
        self.wav_scp = wav_scp

    def __len__(self) -> int:
        return len(self.rows)

    def texts(self) -> Iterator[str]:
        return (self.texts_by_id[uid] for uid, _, _ in self.rows if uid in self.texts_by_id)

    def ids(self) -> list[str]:
        return [uid for uid, _, _ in self.rows]

    def _entry(self, row: tuple[str, str, int]) -> Entry:
        uid, value, number = row
        where = f"{self.wav_scp}:{number}"
        if not value:
            raise BadUtterance(f"{where}: no wav path")
        text = self.texts_by_id.get(uid)
        if not text:
            raise BadUtterance(f"{where}: utterance {uid!r} has no transcript in "
                               f"{self.path / TEXT}")
        wav = self.path / value
        try:
            with wave.open(str(wav), "rb") as reader:
                samples = check_format(reader, f"{where}: {wav}")
        except (wave.Error, EOFError, OSError) as error:
            raise BadUtterance(f"{where}: {wav}: unreadable wav "
                               f"({str(error) or 'truncated header'})") from None
        return Entry(uid, text, samples, where, str(wav))

    def entries(self, seed: int, epoch: int) -> Iterator[Entry | BadUtterance]:
        order = list(self.rows)
        random.Random(f"{seed}/{epoch}").shuffle(order)
        for row in order:
            try:
                yield self._entry(row)
            except BadUtterance as bad:
                bad.uid = row[0]
                yield bad

    def load(self, entry: Entry) -> np.ndarray:
        try:
            return load_wav(entry.path)
        except InputError as error:
            raise BadUtterance(f"{entry.where}: {error}") from None

    def first(self, count: int, seed: int) -> list[Entry]:
        rows = random.Random(seed).sample(self.rows, min(count, len(self.rows)))
        good = []
        for row in rows:
            try:
                good.append(self._entry(row))
            except BadUtterance:
                continue
        return good


def read_wav_bytes(data: bytes, where: str) -> np.ndarray:
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            frames = check_format(reader, where)
            pcm = reader.readframes(frames)
    except (wave.Error, EOFError) as error:
        reason = str(error) or "truncated header"
        raise BadUtterance(f"{where}: unreadable wav ({reason})") from None
    if len(pcm) != frames * SAMPLE_WIDTH:
        raise BadUtterance(f"{where}: truncated wav (header says {frames} samples, "
                           f"member holds {len(pcm) // SAMPLE_WIDTH})")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32)


class ShardCorpus(Corpus):
    def __init__(self, path: Path):
        super().__init__(path)
        listing = self.path / SHARD_LIST
        self.shards = []
        for line in listing.read_text(encoding="utf-8").splitlines():
            if line.strip():
                self.shards.append(str((self.path / line.strip()).resolve()))
        if not self.shards:
            raise InputError(f"{listing}: no shards")
        self.text_file = self.path / TEXT
        if not self.text_file.is_file():
            raise InputError(f"{self.text_file}: missing (`tinyasr data shard` writes it beside "
                             f"{SHARD_LIST})")
        self._count = sum(1 for _ in self._text_rows())
        self._open: tuple[str, BinaryIO] | None = None

    def _text_rows(self) -> Iterator[tuple[str, str]]:
        with open(self.text_file, encoding="utf-8") as handle:
            for line in handle:
                fields = line.strip().split(maxsplit=1)
                if len(fields) == 2:
                    yield fields[0], fields[1]

    def __len__(self) -> int:
        return self._count

    def texts(self) -> Iterator[str]:
        return (text for _, text in self._text_rows())

    def ids(self) -> list[str]:
        return [uid for uid, _ in self._text_rows()]

    def _shard_entries(self, shard: str) -> Iterator[Entry | BadUtterance]:
        """The utterances of one shard in order; a torn tar ends the shard with one bad entry."""
        name = Path(shard).name
        text: tuple[str, str] | None = None
        try:
            with tarfile.open(shard, "r:") as tar:
                for member in tar:
                    stem, _, suffix = member.name.rpartition(".")
                    where = f"{shard}:{member.name}"
                    if suffix not in ("txt", "wav"):
                        continue
                    file = tar.extractfile(member)
                    if file is None:                    # a directory or a device
                        yield BadUtterance(f"{where}: not a file", stem)
                        continue
                    if suffix == "txt":
                        raw = file.read()
                        text = (stem, raw.decode("utf-8", errors="replace").strip())
                    elif suffix == "wav":
                        if text is None or text[0] != stem or not text[1]:
                            yield BadUtterance(f"{where}: no transcript ({stem}.txt) before it",
                                               stem)
                            continue
                        try:
                            with wave.open(file, "rb") as reader:
                                samples = check_format(reader, where)
                        except (wave.Error, EOFError) as error:
                            yield BadUtterance(f"{where}: unreadable wav "
                                               f"({str(error) or 'truncated header'})", stem)
                            continue
                        yield Entry(stem, text[1], samples, where, shard,
                                    member.offset_data, member.size)
                        text = None
        except (tarfile.TarError, OSError, EOFError) as error:
            yield BadUtterance(f"{shard}: unreadable shard {name} ({error}); rest of it skipped")

    def entries(self, seed: int, epoch: int) -> Iterator[Entry | BadUtterance]:
        order = list(self.shards)
        random.Random(f"{seed}/{epoch}").shuffle(order)
        for shard in order:
            yield from self._shard_entries(shard)

    def load(self, entry: Entry) -> np.ndarray:
        try:
            if self._open is None or self._open[0] != entry.path:
                if self._open is not None:
                    self._open[1].close()
                self._open = (entry.path, open(entry.path, "rb"))
            handle = self._open[1]
            handle.seek(entry.offset)
            data = handle.read(entry.size)
        except OSError as error:
            raise BadUtterance(f"{entry.where}: unreadable ({error})") from None
        return read_wav_bytes(data, entry.where)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": None}     # file handles stay in their process

    def first(self, count: int, seed: int) -> list[Entry]:
        """The first `count` readable utterances of the shards in list order (a shard's order is
        already mixed when it is written)."""
        good = []
        for shard in self.shards:
            for entry in self._shard_entries(shard):
                if isinstance(entry, Entry):
                    good.append(entry)
                    if len(good) == count:
                        return good
        return good


class SampledCorpus(Corpus):
    """The utterances of `inner` whose ids are in `ids`, in `inner`'s stream order; a problem
    with one of the others is not reported (a torn shard, which may hold some of `ids`, is)."""

    def __init__(self, inner: Corpus, ids: list[str]):
        super().__init__(inner.path)
        self.inner, self.wanted = inner, frozenset(ids)

    def __len__(self) -> int:
        return len(self.wanted)

    def ids(self) -> list[str]:
        return [uid for uid in self.inner.ids() if uid in self.wanted]

    def entries(self, seed: int, epoch: int) -> Iterator[Entry | BadUtterance]:
        return (entry for entry in self.inner.entries(seed, epoch)
                if entry.uid in self.wanted or entry.uid is None)

    def load(self, entry: Entry) -> np.ndarray:
        return self.inner.load(entry)

    def first(self, count: int, seed: int) -> list[Entry]:
        return [entry for entry in self.inner.first(len(self.inner), seed)
                if entry.uid in self.wanted][:count]


def write_shards(utterances: list, out: Path, per_shard: int, seed: int = 0) -> int:
    """Writes `utterances` (datadir.Utterance) into tar shards of `per_shard` each, in a seeded
    random order (so a shard mixes speakers), plus shards.list and text; returns the shard count.
    `out` must exist and be empty."""
    order = list(utterances)
    random.Random(seed).shuffle(order)
    names = []
    for start in range(0, len(order), per_shard):
        name = f"shard_{start // per_shard:06d}.tar"
        with tarfile.open(out / name, "w") as tar:
            for utterance in order[start:start + per_shard]:
                data = utterance.text.encode("utf-8")
                info = tarfile.TarInfo(f"{utterance.uid}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                tar.add(str(utterance.wav), arcname=f"{utterance.uid}.wav")
        names.append(name)
    (out / SHARD_LIST).write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    (out / TEXT).write_text("".join(f"{u.uid} {u.text}\n" for u in sorted(
        utterances, key=lambda u: u.uid)), encoding="utf-8")
    return len(names)
