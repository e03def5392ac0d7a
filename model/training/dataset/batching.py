"""Bounded shuffling, length sorting and dynamic batching of planned utterances, and collation.

All three work on a stream and hold at most their buffer: memory does not grow with the corpus.
A batch is as many utterances as fit `max_frames` of padded features (the longest one's frames
times the count); one utterance longer than that is a batch by itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

from tinyasr.model.network.san_m import IGNORE_ID

T = TypeVar("T")


def shuffled(items: Iterable[T], buffer: int, rng: random.Random) -> Iterator[T]:
    """Items in a random order, each drawn from a window of `buffer` upcoming ones."""
    window: list[T] = []
    for item in items:
        window.append(item)
        if len(window) >= buffer:
            index = rng.randrange(len(window))
            window[index], window[-1] = window[-1], window[index]
            yield window.pop()
    rng.shuffle(window)
    yield from window


def batched(items: Iterable[T], length: Callable[[T], int], sort_buffer: int, max_frames: int,
            rng: random.Random) -> Iterator[list[T]]:
    """Batches of similar length: each `sort_buffer` items are sorted by length, cut into
    batches of at most `max_frames` padded frames, and those batches shuffled (so a buffer's
    short ones do not always come first)."""
    window: list[T] = []

    def cut() -> list[list[T]]:
        window.sort(key=length)
        batches: list[list[T]] = []
        current: list[T] = []
        for item in window:      # sorted ascending: the newest item is the longest
            if current and length(item) * (len(current) + 1) > max_frames:
                batches.append(current)
                current = []
            current.append(item)
        if current:
            batches.append(current)
        window.clear()
        rng.shuffle(batches)
        return batches

    for item in items:
        window.append(item)
        if len(window) >= sort_buffer:
            yield from cut()
    if window:
        yield from cut()


def collate(fbanks: list[torch.Tensor], token_ids: list[list[int]]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded (B, T, 80) features with their lengths, IGNORE_ID-padded targets with theirs."""
    frame_lengths = torch.tensor([len(f) for f in fbanks])
    features = torch.nn.utils.rnn.pad_sequence(fbanks, batch_first=True)
    target_lengths = torch.tensor([len(t) for t in token_ids])
    targets = torch.full((len(token_ids), int(target_lengths.max())), IGNORE_ID)
    for row, ids in enumerate(token_ids):
        targets[row, :len(ids)] = torch.tensor(ids)
    return features, frame_lengths, targets, target_lengths
