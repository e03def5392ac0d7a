"""A data dir's statistics, and a small sample of one copied to a new data dir
(`tinyasr data check|subset`)."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import (
    SAMPLE_RATE,
    Utterance,
    read_data_dir,
    wav_samples,
    write_data_dir,
)
from tinyasr.model.data.synth import building, check_destination, check_not_inside


def utterance_seconds(wav: Path) -> float:
    return wav_samples(wav) / SAMPLE_RATE


@dataclass(frozen=True)
class DataDirStats:
    utterances: int
    seconds: float
    speakers: int

    @property
    def mean_seconds(self) -> float:
        return self.seconds / self.utterances if self.utterances else 0.0


def data_dir_stats(data_dir: Path) -> DataDirStats:
    """Utterances, seconds of audio and speakers of a valid data dir (InputError if not)."""
    utterances = read_data_dir(data_dir)
    seconds = sum(utterance_seconds(utterance.wav) for utterance in utterances)
    speakers = Counter(utterance.speaker for utterance in utterances
                       if utterance.speaker is not None)
    return DataDirStats(len(utterances), seconds, len(speakers))


def pick_spread(utterances: list[Utterance], count: int, max_seconds: float) -> list[Utterance]:
    """Up to `count` utterances no longer than `max_seconds`, evenly spaced through the list.

    Ids start with the speaker in Kaldi corpora, so speakers and engines appear in proportion.
    """
    short = [utterance for utterance in utterances
             if utterance_seconds(utterance.wav) <= max_seconds]
    step = max(len(short) / count, 1.0)
    return [short[int(index * step)] for index in range(min(count, len(short)))]


def write_subset(source: Path, out: Path, count: int, max_seconds: float,
                 force: bool = False) -> list[Utterance]:
    """Copies up to `count` utterances of `source` no longer than `max_seconds`, spread over it
    (pick_spread), to a new data dir `out` (wavs in `out`/wavs), built beside it and renamed into
    place; an existing `out` only with `force`. Returns the chosen utterances (as in `source`)."""
    check_destination(out, force)
    check_not_inside(source, out)
    chosen = pick_spread(read_data_dir(source), count, max_seconds)
    if not chosen:
        raise InputError(f"{source}: no utterance is {max_seconds:g} s or shorter "
                         "(--max-seconds)")
    with building(out) as build:
        (build / "wavs").mkdir()
        copies = [replace(u, wav=build / "wavs" / u.wav.name) for u in chosen]
        for original, copy in zip(chosen, copies, strict=True):
            shutil.copyfile(original.wav, copy.wav)
        write_data_dir(build, copies)
    return chosen
