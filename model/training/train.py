"""Training: joint CTC/attention loss, streamed augmented data, data-parallel ranks, atomic
checkpoints, resume after kill -9, averaged result.

The run directory holds:
    run.json          the recipe (model + train + augment config) this run was started with
    tokens.json       the tokenizer built from the training transcripts
    state.pt          everything needed to resume (weights, optimizer, step, position in the
                      epoch's batch sequence), rewritten atomically every `save_every_steps`
                      optimizer steps and at each epoch's end; loaded with weights_only
    epoch_N.pt        the weights after epoch N (for averaging) with that epoch's dev CER
    final/            the averaged model as a model directory (see model_dir.py)
A kill at any moment loses at most the steps since the last save; nothing written is corrupted.

Data is streamed (model/training/dataset/): nothing is precomputed and memory does not grow with the
corpus. The batch sequence of an epoch depends only on the seed, the epoch and the corpus, and
every random draw of a step (augmentation, SpecAugment, dropout) is seeded by (seed, epoch,
batch number), so a resumed run, with any number of processes, continues the same stream. With
several processes (model/training/distributed.py) each optimizer step consumes world x accum_grad
consecutive batches of the sequence, and gradients are averaged over them (DDP); one process
with accum_grad N sees the same batches as N processes with accum_grad 1. Only rank 0 writes.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm import tqdm

from tinyasr.model.common.atomic import atomic_file, atomic_write_text
from tinyasr.model.common.errors import InputError, first_line
from tinyasr.model.common.progress import verbosity
from tinyasr.model.data.datadir import Utterance, load_wav, read_data_dir
from tinyasr.model.decoding.evaluate import evaluate
from tinyasr.model.decoding.metrics import ErrorCounts
from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
from tinyasr.model.decoding.recognizer import Recognizer
from tinyasr.model.network.model_dir import load_model_dir, save_model_dir
from tinyasr.model.network.san_m import AsrModel, ModelConfig
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training import distributed
from tinyasr.model.training.dataset.augment import AugmentConfig
from tinyasr.model.training.dataset.batching import collate
from tinyasr.model.training.dataset.sources import Corpus
from tinyasr.model.training.dataset.stream import StreamItem
from tinyasr.model.training.loop import (
    LoopConfig,
    StepLoop,
    loss_scaler,
)

__all__ = ["collate"]   # re-exported: calibration and tests collate as training does

STATE_FILE = "state.pt"
RUN_FILE = "run.json"


@dataclass
class TrainConfig(LoopConfig):
    """The recipe's "train" section: the steps' settings (LoopConfig) and the run's."""

    epochs: int = 30
    peak_lr: float = 2e-3
    warmup_steps: int = 500           # optimizer steps
    average_last: int = 5             # final model = mean of the last N epochs' weights
    save_every_steps: int = 100
    cmvn_utterances: int = 500
    teacher: str | None = None        # model directory to distill from (same tokens)
    distill_weight: float = 0.5       # share of the loss that is the KL to the teacher

    POSITIVE_INTS = ("epochs", "warmup_steps", "average_last", "save_every_steps",
                     "cmvn_utterances", "accum_grad", "shuffle_buffer", "sort_buffer")

    def check(self) -> None:
        """ValueError naming the first key out of range (average_last may exceed epochs: the
        final model averages the epochs there are)."""
        for key in (*self.POSITIVE_INTS, "batch_seconds"):
            value = getattr(self, key)
            kinds = int if key in self.POSITIVE_INTS else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
                what = "a positive integer" if kinds is int else "a positive number"
                raise ValueError(f"train.{key} must be {what}, not {value!r}")
        if (isinstance(self.data_workers, bool) or not isinstance(self.data_workers, int)
                or self.data_workers < 0):
            raise ValueError(f"train.data_workers must be an integer >= 0, "
                             f"not {self.data_workers!r}")
        for key in ("peak_lr", "grad_clip"):
            value = getattr(self, key)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not 0 < value < math.inf):
                raise ValueError(f"train.{key} must be a positive number, not {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"train.seed must be an integer >= 0, not {self.seed!r}")
        if self.teacher is not None and not isinstance(self.teacher, str):
            raise ValueError(f"train.teacher must be a model directory path, not "
                             f"{self.teacher!r}")
        if (isinstance(self.distill_weight, bool)
                or not isinstance(self.distill_weight, (int, float))
                or not 0.0 <= self.distill_weight <= 1.0):
            raise ValueError(f"train.distill_weight must be in [0, 1], not "
                             f"{self.distill_weight!r}")


@dataclass
class Recipe:
    model: dict        # ModelConfig fields except vocab_size (known only from the data)
    train: TrainConfig
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    SECTIONS = ("model", "train", "augment")

    @classmethod
    def from_dict(cls, raw: dict) -> Recipe:
        """ValueError/TypeError naming what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object")
        for section in cls.SECTIONS:
            if not isinstance(raw.get(section, {}), dict):
                raise ValueError(f"{section} must be a JSON object, not "
                                 f"{type(raw[section]).__name__}")
        if "vocab_size" in raw.get("model", {}):
            raise ValueError("model.vocab_size is not set by a recipe: it is the token count "
                             "of the training text")
        # every model key and size checked now, with the smallest vocabulary (the real one
        # is known from the data; the parameter bound is checked again then)
        ModelConfig.from_dict({**raw.get("model", {}), "vocab_size": 3})
        known = {f.name for f in fields(TrainConfig)}
        unknown = set(raw.get("train", {})) - known
        if unknown or set(raw) - set(cls.SECTIONS):
            raise ValueError(f"unknown keys: {sorted(unknown | (set(raw) - set(cls.SECTIONS)))}")
        recipe = cls(model=raw.get("model", {}), train=TrainConfig(**raw.get("train", {})),
                     augment=AugmentConfig.from_dict(raw.get("augment", {})))
        recipe.train.check()
        return recipe

    @classmethod
    def load(cls, path: Path) -> Recipe:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as error:
            raise InputError(f"{path}: bad training config ({error})") from None

    def to_dict(self) -> dict:
        return {"model": self.model, "train": asdict(self.train),
                "augment": self.augment.to_dict()}


def atomic_save(obj: object, path: Path) -> None:
    """torch.save that never leaves `path` half-written."""
    with atomic_file(path) as handle:
        torch.save(obj, handle)


def estimate_cmvn(model: AsrModel, fbanks) -> None:
    """Sets the model's global CMVN from the statistics of raw `fbanks` (frames, 80), an
    iterable: one utterance's features at a time."""
    total = torch.zeros(model.cmvn.mean.shape, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    frames = 0
    for features in fbanks:
        total += features.double().sum(0)
        total_sq += (features.double() ** 2).sum(0)
        frames += features.shape[0]
    mean = total / max(frames, 1)
    std = torch.sqrt(torch.clamp(total_sq / max(frames, 1) - mean ** 2, min=1e-10))
    model.cmvn.mean.copy_(mean.float())
    model.cmvn.istd.copy_((1.0 / std).float())


def compute_fbanks(model: AsrModel, utterances: list[Utterance]) -> list[torch.Tensor]:
    """Raw log-mel features of every utterance, computed once: they are deterministic (no
    dither). For compression fine-tuning's few hundred utterances; training streams instead."""
    with torch.no_grad():
        return [model.fbank(torch.from_numpy(load_wav(u.wav))[None])[0]
                for u in tqdm(utterances, desc="features", leave=False)]


def load_examples(model: AsrModel, tokenizer: Tokenizer, split_dir: Path,
                  limit: int | None = None, seed: int = 0
                  ) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Raw fbanks and token ids of a data dir's utterances (a seeded sample of `limit` of them)."""
    utterances = read_data_dir(split_dir)
    if limit is not None and limit < len(utterances):
        utterances = random.Random(seed).sample(utterances, limit)
    return compute_fbanks(model, utterances), [tokenizer.encode(u.text) for u in utterances]


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to peak_lr, then inverse square-root decay; `step` counts optimizer steps."""
    step = max(step, 1)
    return config.peak_lr * min(step / config.warmup_steps, math.sqrt(config.warmup_steps / step))


def check_same_recipe(out_dir: Path, recipe: Recipe) -> None:
    """A run dir resumes only the recipe it started with, except for the epoch count (the
    learning-rate schedule does not depend on it), to extend or cut short a run, the teacher,
    to go on training with distillation, and the data workers (the batch sequence does not
    depend on them). run.json holds the recipe last run; one written before a section or key
    existed reads with that key's default."""
    run_file = Path(out_dir) / RUN_FILE
    if not run_file.exists():
        return
    may_change = ("epochs", "teacher", "distill_weight", "data_workers")
    try:
        started_with = Recipe.from_dict(json.loads(run_file.read_text())).to_dict()
    except (OSError, ValueError, TypeError):
        started_with = None
    requested = recipe.to_dict()
    for sections in (started_with or {}, requested):
        for key in may_change:
            sections.get("train", {}).pop(key, None)
    if started_with != requested:
        raise InputError(f"{out_dir}: holds a run with a different config; use another --out")


def recipe_model_config(recipe: Recipe, vocab_size: int) -> ModelConfig:
    """The recipe's model with the data's vocabulary; sizes the vocabulary makes too big are
    one line (every other key was checked when the recipe was read)."""
    try:
        return ModelConfig.from_dict({**recipe.model, "vocab_size": vocab_size})
    except ValueError as error:
        raise InputError(f"the recipe's model with the data's {vocab_size} tokens: "
                         f"{error}") from None


def preflight(data_dir: Path, recipe: Recipe, out_dir: Path) -> None:
    """The input checks every rank's Trainer makes, without building anything: run once by a
    launcher before it starts the ranks, so bad input is one line, said once."""
    corpus = Corpus.open(Path(data_dir) / "train")
    read_data_dir(Path(data_dir) / "dev")
    check_same_recipe(out_dir, recipe)
    state_file = Path(out_dir) / STATE_FILE
    if state_file.exists():
        load_state(state_file)
    tokens_file = Path(out_dir) / "tokens.json"
    tokenizer = (Tokenizer.load(tokens_file) if tokens_file.exists()
                 else Tokenizer.from_texts(corpus.texts()))
    recipe_model_config(recipe, len(tokenizer))
    if recipe.train.teacher is not None:
        _, teacher_tokens = load_model_dir(Path(recipe.train.teacher))
        if teacher_tokens.tokens != tokenizer.tokens:
            raise InputError(f"{recipe.train.teacher}: teacher has other tokens than this run")


class Trainer:
    """Owns one run directory: starts it, or resumes it exactly where its last save left off.
    One per process; `context` says which rank this is (rank 0 writes every file)."""

    def __init__(self, data_dir: Path, recipe: Recipe, out_dir: Path,
                 context: distributed.Context | None = None,
                 precision: torch.dtype | None = None):
        self.context = context or distributed.Context()
        self.main = self.context.main
        self.out_dir = Path(out_dir)
        self.recipe = recipe
        self.config = recipe.train
        self.corpus = Corpus.open(Path(data_dir) / "train")
        self.dev_set = read_data_dir(Path(data_dir) / "dev")
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.out_dir)
            self._check_same_recipe()
            self.tokenizer = self._tokenizer()
        distributed.barrier(self.context)      # run.json and tokens.json are written
        if not self.main:
            self._check_same_recipe()
            self.tokenizer = Tokenizer.load(self.out_dir / "tokens.json")
        model_config = recipe_model_config(recipe, len(self.tokenizer))
        torch.manual_seed(self.config.seed)
        self.model = AsrModel(model_config, self.tokenizer.sos_eos)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.peak_lr,
                                           weight_decay=1e-6)
        self.teacher = self._teacher()
        state_file = self.out_dir / STATE_FILE
        state = load_state(state_file) if state_file.exists() else None
        self.epoch, self.next_batch, self.step = 0, 0, 0
        self.train_seconds = 0.0      # wall time spent in training steps, summed over resumes
        self.losses: list[float] = []     # this process's loss per optimizer step, this session
        self.precision = precision
        device = self.context.device
        self.scaler = loss_scaler(device, precision)
        if state is not None:
            # on its device first: loading the optimizer state puts Adam's moments on their
            # parameters' device
            self.model.to(device)
            self._resume(state)
        elif self.main:
            sample = self.corpus.first(self.config.cmvn_utterances, self.config.seed)
            with torch.no_grad():
                estimate_cmvn(self.model, (self.model.fbank(torch.from_numpy(
                    self.corpus.load(entry))[None])[0] for entry in sample))
        self.loop = StepLoop(self.model, self.optimizer, self.tokenizer, self.corpus,
                             recipe.augment, self.config, self.context, precision,
                             self.teacher, self.config.distill_weight, self.scaler)

    def _check_same_recipe(self) -> None:
        check_same_recipe(self.out_dir, self.recipe)
        if self.main:
            atomic_write_text(self.out_dir / RUN_FILE,
                              json.dumps(self.recipe.to_dict(), indent=2) + "\n")

    def _teacher(self) -> AsrModel | None:
        if self.config.teacher is None:
            return None
        teacher, tokenizer = load_model_dir(Path(self.config.teacher))
        if tokenizer.tokens != self.tokenizer.tokens:
            raise InputError(f"{self.config.teacher}: teacher has other tokens than this run")
        if self.main:
            print(f"distilling from {self.config.teacher} (weight {self.config.distill_weight})")
        return teacher

    def _tokenizer(self) -> Tokenizer:
        tokens_file = self.out_dir / "tokens.json"
        if tokens_file.exists():
            return Tokenizer.load(tokens_file)
        tokenizer = Tokenizer.from_texts(self.corpus.texts())
        tokenizer.save(tokens_file)
        return tokenizer

    def _resume(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"{self.out_dir / STATE_FILE}: not a training state of this run's "
                             f"model ({first_line(error)})") from None
        self.epoch, self.next_batch, self.step = state["epoch"], state["next_batch"], state["step"]
        self.train_seconds = state["train_seconds"]
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.main:
            print(f"resuming {self.out_dir} at epoch {self.epoch + 1}, batch {self.next_batch}, "
                  f"step {self.step}")

    def _save_state(self) -> None:
        if not self.main:
            return
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "next_batch": self.next_batch, "step": self.step,
                 "train_seconds": self.train_seconds}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        atomic_save(state, self.out_dir / STATE_FILE)

    def _step(self, micro: list[StreamItem]) -> float:
        """One optimizer step over this rank's `micro` batches, on the schedule's learning rate."""
        started = time.perf_counter()
        loss = self.loop.step(micro, learning_rate(self.step + 1, self.config), self.epoch)
        self.step += 1
        self.train_seconds += time.perf_counter() - started
        return loss

    def train_epoch(self) -> None:
        """The rest of the current epoch: steps while every rank has accum_grad batches left."""
        started = time.perf_counter()
        with tqdm(desc=f"epoch {self.epoch + 1}/{self.config.epochs}", unit="step",
                  dynamic_ncols=True,
                  disable=not self.main or verbosity() < 0) as bar:   # closed on errors too
            for micro in self.loop.epoch(self.epoch, self.next_batch):
                loss = self._step(micro)
                self.losses.append(loss)
                self.next_batch += self.loop.batches_per_step
                bar.update()
                bar.set_postfix(loss=f"{loss:.2f}", step=self.step, refresh=False)
                if self.step % self.config.save_every_steps == 0:
                    self._save_state()
        elapsed = time.perf_counter() - started
        if self.main:
            skipped = f", {self.loop.bad} unreadable utterances skipped" if self.loop.bad else ""
            print(f"epoch {self.epoch + 1}: {self.loop.audio_seconds / 3600:.2f} h of audio at "
                  f"{self.loop.audio_seconds / max(elapsed, 1e-9):.1f} s/s on "
                  f"{self.context.world} process(es){skipped}")

    def dev_cer(self, shared: bool = True) -> float:
        """Greedy-CTC CER on the dev set; `shared`: each rank decodes its share, counts summed."""
        model = self.model if self.context.device.type == "cpu" else copy.deepcopy(self.model).cpu()
        recognizer = Recognizer(model, self.tokenizer, DecodeOptions(DecodeMode.CTC_GREEDY))
        rank, world = (self.context.rank, self.context.world) if shared else (0, 1)
        counts = evaluate(recognizer, self.dev_set[rank::world]).cer
        self.model.train()
        if shared and self.context.distributed:
            errors, reference = distributed.sum_all(self.context,
                                                    [counts.errors, counts.reference_length])
            counts = ErrorCounts(substitutions=int(errors), reference_length=int(reference))
        return counts.rate

    def run(self) -> Path | None:
        while self.epoch < self.config.epochs:
            self.train_epoch()
            cer = self.dev_cer()
            if self.main:
                atomic_save({"model": self.model.state_dict(), "dev_cer": cer},
                            self.out_dir / f"epoch_{self.epoch + 1}.pt")
                print(f"epoch {self.epoch + 1}: dev CER {cer:.2f}% (greedy CTC), step "
                      f"{self.step}, {self.train_seconds / 60:.1f} min of training")
            self.epoch, self.next_batch = self.epoch + 1, 0
            self._save_state()
        distributed.barrier(self.context)
        return self.finish() if self.main else None

    def finish(self) -> Path:
        """Averages the last epochs into final/ and reports its dev CER."""
        first = max(1, self.config.epochs - self.config.average_last + 1)
        checkpoints = [self.out_dir / f"epoch_{n}.pt" for n in range(first, self.config.epochs + 1)]
        self.model.load_state_dict(average_weights(checkpoints))
        final = self.out_dir / "final"
        model = self.model if self.context.device.type == "cpu" else copy.deepcopy(self.model).cpu()
        save_model_dir(model, self.tokenizer, final)
        print(f"averaged epochs {first}-{self.config.epochs} -> {final}: "
              f"dev CER {self.dev_cer(shared=False):.2f}% (greedy CTC)")
        return final


STATE_KEYS = ("model", "optimizer", "epoch", "next_batch", "step", "train_seconds")


def load_state(path: Path) -> dict:
    """A run's resume state, loaded without unpickling code (weights_only): tensors, numbers,
    strings and containers of them. Anything else, or a state missing a key, is one InputError."""
    try:
        with warnings.catch_warnings():   # a foreign pickle's warnings would print pages
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{path}: not a training state (it holds Python objects other than "
                         "tensors, numbers, strings and containers; not loaded, since unpickling "
                         "them could run code)") from None
    except Exception as error:      # noqa: BLE001 - a torn or foreign file raises many types
        text = str(error).strip()
        reason = text.splitlines()[0][:200] if text else type(error).__name__
        raise InputError(f"{path}: not a training state ({reason})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a training state (a {type(state).__name__}, not a dict)")
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise InputError(f"{path}: not a training state (missing {', '.join(missing)})")
    for key in ("epoch", "next_batch", "step"):
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{path}: not a training state ({key} is {value!r})")
    if not all(isinstance(state[key], dict) for key in ("model", "optimizer")):
        raise InputError(f"{path}: not a training state (model and optimizer must be dicts)")
    return state


def remove_stale_temp_files(out_dir: Path) -> None:
    """Deletes the `.NAME.PID.tmp` files that atomic writes of a killed run left behind; a temp
    file of a process still alive is being written and stays."""
    for temp in out_dir.glob(".*.tmp"):
        pid = temp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _process_alive(int(pid)):
            temp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def average_weights(checkpoints: list[Path]) -> dict[str, torch.Tensor]:
    states = [torch.load(path, map_location="cpu", weights_only=True)["model"]
              for path in checkpoints]
    zero = torch.zeros((), dtype=torch.float64)
    return {name: sum((state[name].double() for state in states), zero).div(len(states))
            .to(states[0][name].dtype) for name in states[0]}
