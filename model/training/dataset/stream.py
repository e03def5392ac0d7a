"""The training stream: one epoch of a corpus as dynamic batches of augmented fbank, split
across DDP ranks and DataLoader workers.

Every process plans the same global sequence of batches from the utterances' ids and lengths
(wav headers only): the corpus in the epoch's order, a bounded shuffle buffer, augmentation
draws (the speed factor changes lengths), a sort buffer and dynamic batching by padded frames.
Batch k of the sequence, counted from the position the run resumes at, belongs to rank
k mod world, and within that rank to worker (k div world) mod workers; only its owner reads
the audio, augments it and computes fbank (the model's own front end). Because the sequence
does not depend on how many processes read it, a run resumes at the same batch with any
number of ranks or workers: its position is a count of global batches.

An utterance that cannot be read is skipped and reported once: by its batch's owner if its
audio is bad, by rank 0's first worker if its header or transcript is (every process sees those
while planning). Reports travel with the batches (`StreamItem.bad`) to the trainer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import IterableDataset, get_worker_info

from tinyasr.model.network.framing import SAMPLE_RATE, num_frames
from tinyasr.model.training.dataset import augment
from tinyasr.model.training.dataset.batching import batched, collate, shuffled
from tinyasr.model.training.dataset.sources import BadUtterance, Corpus, Entry


@dataclass
class Planned:
    entry: Entry
    plan: augment.AugmentPlan

    @property
    def frames(self) -> int:
        return num_frames(self.plan.length(self.entry.samples))


@dataclass
class StreamItem:
    """One batch for the trainer (`batch` None: only reports, at the end of a worker's stream).
    `index` is the global batch number in the epoch."""

    index: int
    batch: tuple[torch.Tensor, ...] | None
    uids: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    bad: list[str] = field(default_factory=list)


@dataclass
class StreamConfig:
    seed: int = 0
    batch_frames: int = 8000
    shuffle_buffer: int = 1000
    sort_buffer: int = 500


class SpeechStream(IterableDataset):
    def __init__(self, corpus: Corpus, tokenizer, fbank: torch.nn.Module,
                 config: StreamConfig, augment_config: augment.AugmentConfig,
                 rank: int = 0, world: int = 1):
        super().__init__()
        self.corpus, self.tokenizer, self.fbank = corpus, tokenizer, fbank
        self.config, self.augment_config = config, augment_config
        self.rank, self.world = rank, world
        self.noise_files = augment.noise_wavs(augment_config)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The epoch to stream, from global batch `start` on (a resumed run's position)."""
        self.epoch, self.start = epoch, start

    def plan(self, bad: list[str]) -> Iterator[list[Planned]]:
        """The epoch's global batch sequence, unread; bad entries go to `bad`."""
        seed, epoch = self.config.seed, self.epoch

        def good_entries() -> Iterator[Entry]:
            for entry in self.corpus.entries(seed, epoch):
                if isinstance(entry, BadUtterance):
                    bad.append(str(entry))
                else:
                    yield entry

        mixed = shuffled(good_entries(), self.config.shuffle_buffer,
                         random.Random(f"shuffle/{seed}/{epoch}"))
        planned = (Planned(entry, augment.plan(self.augment_config, seed, epoch, entry.uid,
                                               len(self.noise_files)))
                   for entry in mixed)
        return batched(planned, lambda item: item.frames, self.config.sort_buffer,
                       self.config.batch_frames, random.Random(f"batches/{seed}/{epoch}"))

    def _features(self, item: Planned) -> torch.Tensor:
        samples = self.corpus.load(item.entry)
        if len(samples) != item.entry.samples:
            raise BadUtterance(f"{item.entry.where}: {len(samples)} samples, header said "
                               f"{item.entry.samples}")
        samples = augment.apply(item.plan, samples, self.noise_files)
        with torch.no_grad():
            features = self.fbank(torch.from_numpy(samples)[None])[0]
        if item.plan.vtlp_warp is not None:
            features = augment.warp_frequencies(features, item.plan.vtlp_warp)
        return features

    def load_batch(self, index: int, items: list[Planned]) -> StreamItem:
        fbanks, token_ids, uids, bad, samples = [], [], [], [], 0
        for item in items:
            try:
                features = self._features(item)
            except BadUtterance as error:
                bad.append(str(error))
                continue
            if len(features) == 0:
                bad.append(f"{item.entry.where}: shorter than one 25 ms frame")
                continue
            fbanks.append(features)
            token_ids.append(self.tokenizer.encode(item.entry.text))
            uids.append(item.entry.uid)
            samples += item.plan.length(item.entry.samples)
        batch = collate(fbanks, token_ids) if fbanks else None
        return StreamItem(index, batch, uids, samples / SAMPLE_RATE, bad)

    def __iter__(self) -> Iterator[StreamItem]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reporter = self.rank == 0 and worker == 0
        planning_bad: list[str] = []
        for index, items in enumerate(self.plan(planning_bad)):
            offset = index - self.start
            mine = (offset >= 0 and offset % self.world == self.rank
                    and (offset // self.world) % workers == worker)
            if not mine:
                continue
            item = self.load_batch(index, items)
            if reporter:
                item.bad = planning_bad + item.bad
                planning_bad.clear()
            yield item
        if reporter and planning_bad:
            yield StreamItem(-1, None, bad=planning_bad)

