"""Training: joint CTC/attention loss, atomic checkpoints, resume after kill -9, averaged result.

The run directory holds:
    run.json          the recipe (model + train config) this run was started with
    tokens.json       the tokenizer built from the training transcripts
    state.pt          everything needed to resume (weights, optimizer, step, position, RNG),
                      rewritten atomically every `save_every_steps` steps and at each epoch's end
    epoch_N.pt        the weights after epoch N (for averaging) with that epoch's dev CER
    final/            the averaged model as a model directory (see model_dir.py)
A kill at any moment loses at most the steps since the last save; nothing written is corrupted.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from tinyasr.model.atomic import atomic_file, atomic_write_text
from tinyasr.model.datadir import Utterance, load_wav, read_data_dir
from tinyasr.model.errors import InputError
from tinyasr.model.evaluate import evaluate
from tinyasr.model.frontend import FRAME_SHIFT, SAMPLE_RATE
from tinyasr.model.model_dir import load_model_dir, save_model_dir
from tinyasr.model.recognizer import DecodeMode, DecodeOptions, Recognizer
from tinyasr.model.san_m import IGNORE_ID, AsrModel, ModelConfig
from tinyasr.model.tokenizer import Tokenizer

FRAMES_PER_SECOND = SAMPLE_RATE // FRAME_SHIFT
STATE_FILE = "state.pt"
RUN_FILE = "run.json"


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_seconds: float = 80.0       # padded audio per batch
    peak_lr: float = 2e-3
    warmup_steps: int = 500
    grad_clip: float = 5.0
    average_last: int = 5             # final model = mean of the last N epochs' weights
    save_every_steps: int = 100
    cmvn_utterances: int = 500
    seed: int = 0
    teacher: str | None = None        # model directory to distill from (same tokens)
    distill_weight: float = 0.5       # share of the loss that is the KL to the teacher

    POSITIVE_INTS = ("epochs", "warmup_steps", "average_last", "save_every_steps",
                     "cmvn_utterances")

    def check(self) -> None:
        """ValueError naming the first key out of range (average_last may exceed epochs: the
        final model averages the epochs there are)."""
        for key in (*self.POSITIVE_INTS, "batch_seconds"):
            value = getattr(self, key)
            kinds = int if key in self.POSITIVE_INTS else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
                what = "a positive integer" if kinds is int else "a positive number"
                raise ValueError(f"train.{key} must be {what}, not {value!r}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"train.distill_weight must be in [0, 1], not {self.distill_weight}")


@dataclass
class Recipe:
    model: dict        # ModelConfig fields except vocab_size (known only from the data)
    train: TrainConfig

    @classmethod
    def load(cls, path: Path) -> "Recipe":
        try:
            raw = json.loads(Path(path).read_text())
            known = {f.name for f in fields(TrainConfig)}
            unknown = set(raw.get("train", {})) - known
            if unknown or set(raw) - {"model", "train"}:
                raise ValueError(f"unknown keys: {sorted(unknown | (set(raw) - {'model', 'train'}))}")
            recipe = cls(model=raw.get("model", {}), train=TrainConfig(**raw.get("train", {})))
            recipe.train.check()
            return recipe
        except (OSError, ValueError, TypeError) as error:
            raise InputError(f"{path}: bad training config ({error})") from None

    def to_dict(self) -> dict:
        return {"model": self.model, "train": asdict(self.train)}


def atomic_save(obj: object, path: Path) -> None:
    """torch.save that never leaves `path` half-written."""
    with atomic_file(path) as handle:
        torch.save(obj, handle)


def estimate_cmvn(model: AsrModel, fbanks: list[torch.Tensor]) -> None:
    """Sets the model's global CMVN from the statistics of raw `fbanks` (frames, 80)."""
    total = torch.zeros(model.cmvn.mean.shape, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    frames = 0
    for features in fbanks:
        total += features.double().sum(0)
        total_sq += (features.double() ** 2).sum(0)
        frames += features.shape[0]
    mean = total / frames
    std = torch.sqrt(torch.clamp(total_sq / frames - mean ** 2, min=1e-10))
    model.cmvn.mean.copy_(mean.float())
    model.cmvn.istd.copy_((1.0 / std).float())


def make_batches(lengths: list[int], batch_frames: int) -> list[list[int]]:
    """Utterance indices grouped by similar length, each batch's padded size <= batch_frames."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = [[]]
    for index in order:
        if batches[-1] and lengths[index] * (len(batches[-1]) + 1) > batch_frames:
            batches.append([])
        batches[-1].append(index)
    return [batch for batch in batches if batch]


def collate(fbanks: list[torch.Tensor], token_ids: list[list[int]]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    frame_lengths = torch.tensor([len(f) for f in fbanks])
    features = torch.nn.utils.rnn.pad_sequence(fbanks, batch_first=True)
    target_lengths = torch.tensor([len(t) for t in token_ids])
    targets = torch.full((len(token_ids), int(target_lengths.max())), IGNORE_ID)
    for row, ids in enumerate(token_ids):
        targets[row, :len(ids)] = torch.tensor(ids)
    return features, frame_lengths, targets, target_lengths


def compute_fbanks(model: AsrModel, utterances: list[Utterance]) -> list[torch.Tensor]:
    """Raw log-mel features of every utterance, computed once: they are deterministic (no dither)."""
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
    """Linear warm-up to peak_lr, then inverse square-root decay."""
    step = max(step, 1)
    return config.peak_lr * min(step / config.warmup_steps, math.sqrt(config.warmup_steps / step))


def train_step(model: AsrModel, optimizer: torch.optim.Optimizer,
               batch: tuple[torch.Tensor, ...], lr: float, grad_clip: float,
               teacher: AsrModel | None = None,
               distill_weight: float = 0.0) -> tuple[float, dict[str, float]]:
    """One optimizer step on a collated batch, distilled from `teacher` if given; shared by
    training and compression fine-tuning."""
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss, parts = model.loss(*batch, teacher=teacher, distill_weight=distill_weight)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item(), parts


def epoch_batches(batches: list[list[int]], seed: int, epoch: int) -> list[list[int]]:
    shuffled = list(batches)
    random.Random(seed * 1000 + epoch).shuffle(shuffled)
    return shuffled


class Trainer:
    """Owns one run directory: starts it, or resumes it exactly where its last save left off."""

    def __init__(self, data_dir: Path, recipe: Recipe, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.recipe = recipe
        self.config = recipe.train
        self.train_set = read_data_dir(Path(data_dir) / "train")
        self.dev_set = read_data_dir(Path(data_dir) / "dev")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.out_dir)
        self._check_same_recipe()
        self.tokenizer = self._tokenizer()
        model_config = ModelConfig.from_dict({**recipe.model, "vocab_size": len(self.tokenizer)})
        torch.manual_seed(self.config.seed)
        self.model = AsrModel(model_config, self.tokenizer.sos_eos)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.peak_lr,
                                           weight_decay=1e-6)
        self.teacher = self._teacher()
        state = load_state(self.out_dir / STATE_FILE) if (self.out_dir / STATE_FILE).exists() else None
        self.fbanks = compute_fbanks(self.model, self.train_set)
        self.token_ids = [self.tokenizer.encode(u.text) for u in self.train_set]
        self.batches = make_batches([len(f) for f in self.fbanks],
                                    int(self.config.batch_seconds * FRAMES_PER_SECOND))
        self.epoch, self.next_batch, self.step = 0, 0, 0
        self.train_seconds = 0.0      # wall time spent in training steps, summed over resumes
        if state is not None:
            self._resume(state)
        else:
            rng = random.Random(self.config.seed)
            sample = rng.sample(self.fbanks, min(self.config.cmvn_utterances, len(self.fbanks)))
            estimate_cmvn(self.model, sample)

    def _check_same_recipe(self) -> None:
        """A run dir resumes only the recipe it started with, except for the epoch count (the
        learning-rate schedule does not depend on it), to extend or cut short a run, and the
        teacher, to go on training with distillation. run.json holds the recipe last run."""
        run_file = self.out_dir / RUN_FILE
        if run_file.exists():
            may_change = ("epochs", "teacher", "distill_weight")
            started_with = json.loads(run_file.read_text())
            requested = self.recipe.to_dict()
            for recipe in (started_with, requested):
                for key in may_change:
                    recipe.get("train", {}).pop(key, None)
            if started_with != requested:
                raise InputError(f"{self.out_dir}: holds a run with a different config; "
                                 "use another --out")
        atomic_write_text(run_file, json.dumps(self.recipe.to_dict(), indent=2) + "\n")

    def _teacher(self) -> AsrModel | None:
        if self.config.teacher is None:
            return None
        teacher, tokenizer = load_model_dir(Path(self.config.teacher))
        if tokenizer.tokens != self.tokenizer.tokens:
            raise InputError(f"{self.config.teacher}: teacher has other tokens than this run")
        print(f"distilling from {self.config.teacher} (weight {self.config.distill_weight})")
        return teacher

    def _tokenizer(self) -> Tokenizer:
        tokens_file = self.out_dir / "tokens.json"
        if tokens_file.exists():
            return Tokenizer.load(tokens_file)
        tokenizer = Tokenizer.from_texts(u.text for u in self.train_set)
        tokenizer.save(tokens_file)
        return tokenizer

    def _resume(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.next_batch, self.step = state["epoch"], state["next_batch"], state["step"]
        self.train_seconds = state["train_seconds"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resuming {self.out_dir} at epoch {self.epoch + 1}, batch {self.next_batch}, "
              f"step {self.step}")

    def _save_state(self) -> None:
        atomic_save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "epoch": self.epoch, "next_batch": self.next_batch, "step": self.step,
                     "train_seconds": self.train_seconds,
                     "torch_rng": torch.get_rng_state()}, self.out_dir / STATE_FILE)

    def _train_step(self, batch: list[int]) -> tuple[float, dict[str, float]]:
        started = time.perf_counter()
        result = train_step(self.model, self.optimizer,
                            collate([self.fbanks[i] for i in batch],
                                    [self.token_ids[i] for i in batch]),
                            learning_rate(self.step + 1, self.config), self.config.grad_clip,
                            self.teacher, self.config.distill_weight)
        self.step += 1
        self.train_seconds += time.perf_counter() - started
        return result

    def dev_cer(self) -> float:
        recognizer = Recognizer(self.model, self.tokenizer, DecodeOptions(DecodeMode.CTC_GREEDY))
        result = evaluate(recognizer, self.dev_set)
        self.model.train()
        return result.cer.rate

    def run(self) -> Path:
        while self.epoch < self.config.epochs:
            order = epoch_batches(self.batches, self.config.seed, self.epoch)
            bar = tqdm(order[self.next_batch:], desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                       initial=self.next_batch, total=len(order), dynamic_ncols=True)
            for batch in bar:
                loss, parts = self._train_step(batch)
                self.next_batch += 1
                bar.set_postfix(loss=f"{loss:.2f}", ctc=f"{parts['ctc']:.1f}",
                                att=f"{parts['attention']:.1f}", refresh=False)
                if self.step % self.config.save_every_steps == 0:
                    self._save_state()
            cer = self.dev_cer()
            atomic_save({"model": self.model.state_dict(), "dev_cer": cer},
                        self.out_dir / f"epoch_{self.epoch + 1}.pt")
            print(f"epoch {self.epoch + 1}: dev CER {cer:.2f}% (greedy CTC), step {self.step}, "
                  f"{self.train_seconds / 60:.1f} min of training")
            self.epoch, self.next_batch = self.epoch + 1, 0
            self._save_state()
        return self.finish()

    def finish(self) -> Path:
        """Averages the last epochs into final/ and reports its dev CER."""
        first = max(1, self.config.epochs - self.config.average_last + 1)
        checkpoints = [self.out_dir / f"epoch_{n}.pt" for n in range(first, self.config.epochs + 1)]
        self.model.load_state_dict(average_weights(checkpoints))
        final = self.out_dir / "final"
        save_model_dir(self.model, self.tokenizer, final)
        print(f"averaged epochs {first}-{self.config.epochs} -> {final}: "
              f"dev CER {self.dev_cer():.2f}% (greedy CTC)")
        return final


STATE_KEYS = ("model", "optimizer", "epoch", "next_batch", "step", "train_seconds")


def load_state(path: Path) -> dict:
    """A run's resume state, loaded without unpickling code (weights_only): tensors, numbers,
    strings and containers of them. Anything else, or a state missing a key, is one InputError."""
    try:
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
    return {name: sum(state[name].double() for state in states).div(len(states))
            .to(states[0][name].dtype) for name in states[0]}
