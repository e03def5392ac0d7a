"""The optimizer steps every training run takes, shared by `tinyasr train` and the compression
fine-tunes (pruning, quantization-aware training): each rank streams its share of an epoch's
batch sequence (augmented on the fly, model/training/dataset/), and a step runs the model's loss
over accum_grad batches under DistributedDataParallel, autocast and fp16 loss scaling, with every
random draw (SpecAugment, dropout) seeded by (seed, epoch, batch number). What a run does around
the steps (learning-rate schedule, checkpoints, step budget, masks) is its caller's.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from tinyasr.model.common.errors import InputError
from tinyasr.model.network.framing import FRAME_SHIFT, SAMPLE_RATE
from tinyasr.model.network.san_m import AsrModel
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training import distributed
from tinyasr.model.training.dataset.augment import AugmentConfig
from tinyasr.model.training.dataset.batching import collate
from tinyasr.model.training.dataset.sources import Corpus
from tinyasr.model.training.dataset.stream import SpeechStream, StreamConfig, StreamItem

FRAMES_PER_SECOND = SAMPLE_RATE // FRAME_SHIFT
MAX_BAD_FRACTION = 0.01     # more unreadable utterances than this in an epoch stops the run


@dataclass
class LoopConfig:
    """What the steps need of a recipe (TrainConfig has every field; fine-tuning sets its own)."""

    seed: int = 0
    batch_seconds: float = 80.0       # padded audio per batch (per process, per accumulation)
    accum_grad: int = 1               # batches per optimizer step in each process
    grad_clip: float = 5.0
    shuffle_buffer: int = 1000        # utterances (ids and lengths only) shuffled at a time
    sort_buffer: int = 500            # utterances sorted by length before batching
    data_workers: int = 0             # DataLoader processes per rank (0: in the training one)


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """The torch seed for global batch `index` of `epoch` (SpecAugment, dropout)."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2 ** 63)


def loss_scaler(device: torch.device, precision: torch.dtype | None
                ) -> torch.amp.GradScaler | None:
    """fp16 autocast's loss scaling (its gradients underflow without it); None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == torch.float16 else None


def clip_and_step(model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float,
                  scaler: torch.amp.GradScaler | None) -> None:
    """The optimizer step after backward: gradients unscaled (fp16), clipped to `grad_clip`
    total norm, then stepped (the scaler skips a step whose gradients overflowed)."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


class LossForward(nn.Module):
    """model.loss as a forward pass, so DistributedDataParallel sees it (it syncs gradients of
    what its forward ran). The teacher is held outside the module tree: it is not trained."""

    def __init__(self, model: AsrModel, teacher: AsrModel | None, distill_weight: float):
        super().__init__()
        self.model = model
        self.teacher = [teacher]
        self.distill_weight = distill_weight

    def forward(self, features, frame_lengths, targets, target_lengths):
        return self.model.loss(features, frame_lengths, targets, target_lengths,
                               teacher=self.teacher[0], distill_weight=self.distill_weight)


def placeholder_batch() -> tuple[torch.Tensor, ...]:
    """A one-utterance batch run with weight 0 when all of a rank's batch was unreadable: every
    rank must run the forward and backward pass for the gradient all-reduce to match."""
    return collate([torch.zeros(100, 80)], [[1]])


class StepLoop:
    """Streams `corpus` to this rank and takes optimizer steps on `model` with `optimizer`.

    The model is moved to the context's device and, with several ranks, wrapped in DDP here, so
    whatever must be part of it (weight masks, fake quantizers) is attached before; DDP then
    broadcasts rank 0's weights and buffers. `teacher`, if given, is distilled from."""

    def __init__(self, model: AsrModel, optimizer: torch.optim.Optimizer, tokenizer: Tokenizer,
                 corpus: Corpus, augment: AugmentConfig, config: LoopConfig,
                 context: distributed.Context, precision: torch.dtype | None = None,
                 teacher: AsrModel | None = None, distill_weight: float = 0.0,
                 scaler: torch.amp.GradScaler | None = None):
        self.model, self.optimizer, self.corpus = model, optimizer, corpus
        self.config, self.context, self.precision = config, context, precision
        self.scaler = scaler if scaler is not None else loss_scaler(context.device, precision)
        device = context.device
        model.to(device)
        if teacher is not None:
            teacher.to(device)
        self.forward: nn.Module = LossForward(model, teacher, distill_weight)
        if context.distributed:
            self.forward = DistributedDataParallel(
                self.forward, device_ids=[device.index] if device.type == "cuda" else None)
        self.stream = SpeechStream(
            corpus, tokenizer, copy.deepcopy(model.fbank).cpu(),
            StreamConfig(seed=config.seed,
                         batch_frames=int(config.batch_seconds * FRAMES_PER_SECOND),
                         shuffle_buffer=config.shuffle_buffer, sort_buffer=config.sort_buffer),
            augment, rank=context.rank, world=context.world)
        self.audio_seconds = 0.0      # of the batches stepped on in the last epoch(), all ranks
        self.bad = 0                  # unreadable utterances skipped in it, all ranks

    @property
    def batches_per_step(self) -> int:
        """Global batches one optimizer step consumes (every rank's accumulation)."""
        return self.context.world * self.config.accum_grad

    def step(self, micro: list[StreamItem], lr: float, epoch: int) -> float:
        """One optimizer step at learning rate `lr` over this rank's `micro` batches (accum_grad
        of them) of `epoch`; returns their mean loss."""
        self.forward.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        device = self.context.device
        total = 0.0
        for position, item in enumerate(micro):
            torch.manual_seed(batch_seed(self.config.seed, epoch, item.index))
            last = position == len(micro) - 1
            sync = (self.forward.no_sync() if isinstance(self.forward, DistributedDataParallel)
                    and not last else nullcontext())
            batch, weight = ((item.batch, 1.0) if item.batch is not None
                             else (placeholder_batch(), 0.0))
            with sync:
                with torch.autocast(device.type, dtype=self.precision,
                                    enabled=self.precision is not None):
                    loss, _ = self.forward(*(t.to(device, non_blocking=True) for t in batch))
                scaled = loss.float() * (weight / len(micro))
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total += loss.item() * weight
        clip_and_step(self.model, self.optimizer, self.config.grad_clip, self.scaler)
        return total / len(micro)

    def _loader(self) -> DataLoader:
        workers = self.config.data_workers
        return DataLoader(self.stream, batch_size=None, num_workers=workers,
                          prefetch_factor=2 if workers else None,
                          pin_memory=self.context.device.type == "cuda")

    def _report(self, item: StreamItem) -> int:
        for line in item.bad:       # tqdm.write: on a line of its own, not after a bar
            tqdm.write(f"tinyasr: warning: {line}; skipped", file=sys.stderr)
        return len(item.bad)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[list[StreamItem]]:
        """This rank's micro-batches of `epoch` from global batch `start` on, accum_grad at a
        time, while every rank has that many left (each yield is one step for every rank). When
        run to its end it sums `audio_seconds` and `bad` over the ranks; more unreadable
        utterances than MAX_BAD_FRACTION of the corpus is an InputError."""
        self.stream.set_epoch(epoch, start)
        items = iter(self._loader())
        accum = self.config.accum_grad
        bad, audio_seconds = 0, 0.0
        limit = MAX_BAD_FRACTION * len(self.corpus)
        while True:
            micro: list[StreamItem] = []
            for item in items:
                bad += self._report(item)
                if item.index >= 0:
                    micro.append(item)
                if len(micro) == accum:
                    break
            if bad > limit:
                raise InputError(f"{self.corpus.path}: more than {MAX_BAD_FRACTION:.0%} of "
                                 f"{len(self.corpus)} utterances unreadable (the lines named "
                                 "above); fix or drop them")
            if not distributed.all_true(self.context, len(micro) == accum):
                break
            audio_seconds += sum(item.audio_seconds for item in micro)
            yield micro
        for item in items:      # what is left: reports, and at most accum - 1 batches
            bad += self._report(item)
        bad, self.audio_seconds = distributed.sum_all(self.context, [bad, audio_seconds])
        self.bad = int(bad)
        if bad > limit:
            raise InputError(f"{self.corpus.path}: {int(bad)} of {len(self.corpus)} utterances "
                             f"unreadable in epoch {epoch + 1} (more than "
                             f"{MAX_BAD_FRACTION:.0%}; the lines named above); fix or drop them")

