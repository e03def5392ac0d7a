"""Magnitude pruning with a gradual cubic schedule, kept through fine-tuning by weight masks.

Every Linear and Conv weight is viewed as a matrix (out, in * kernel) and cut into blocks of
`rows x cols`; a block's score is its L1 norm and the lowest-scoring blocks are zeroed. Block
shapes (1x4, 4x1, 4x4) are what the compiler turns into BSR kernels; 1x1 is unstructured. A
layer whose matrix does not divide into the block is left dense.

The mask is a torch parametrization (`weight = original * mask`): pruned weights get no gradient
and stay exactly zero while the rest is fine-tuned, and the mask is baked into the weights when
pruning ends. Sparsity follows Zhu & Gupta's cubic ramp, s(t) = s_final * (1 - (1 - t/T)^3),
over the first RAMP_FRACTION of the fine-tuning steps (masks recomputed MASK_UPDATES times);
then the masks stay fixed while fine-tuning goes on.

Shared blocks are one module (the encoder's ModuleList holds each distinct block once), so each
is pruned once, however many positions run it.

Per-layer targets: `sensitivity_scan` prunes one layer at a time (one shot, no fine-tuning) at a
few levels around the target and measures dev CER; `layer_targets` gives each layer the largest
scanned level whose CER increase stays within a tolerance, so sensitive layers get less than the
target and robust ones more.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from tinyasr.model.common.errors import InputError, warn
from tinyasr.model.common.progress import verbosity
from tinyasr.model.data.datadir import Utterance
from tinyasr.model.decoding.evaluate import evaluate
from tinyasr.model.decoding.options import DecodeOptions
from tinyasr.model.decoding.recognizer import Recognizer
from tinyasr.model.network.framing import num_frames
from tinyasr.model.network.san_m import AsrModel, Conv2dSubsampling4
from tinyasr.model.network.sparsity import BlockShape, PrunableLayer, prunable_layers, weight_matrix
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training import distributed
from tinyasr.model.training.dataset.augment import AugmentConfig
from tinyasr.model.training.dataset.sources import BadUtterance, Corpus
from tinyasr.model.training.loop import LoopConfig, StepLoop

RAMP_FRACTION = 2 / 3
MASK_UPDATES = 10
FIRST_CONV = "encoder.subsampling.conv.0"   # 9 weights per filter on the raw features: kept
PRUNING_FILE = "pruning.json"   # written into a pruned model dir: block shape and sparsities
SCAN_FRACTIONS = (0.5, 0.75, 1.0, 1.15)   # scan levels as fractions of the target: a layer
MAX_SPARSITY = 0.95                       # that shrugs off more takes more, up to this



def magnitude_mask(weight: torch.Tensor, sparsity: float, block: BlockShape) -> torch.Tensor:
    """0/1 mask of `weight`'s shape zeroing the `sparsity` fraction of blocks of least L1 norm."""
    matrix = weight_matrix(weight.detach()).abs()
    rows, cols = matrix.shape
    scores = matrix.reshape(rows // block.rows, block.rows, cols // block.cols, block.cols)
    scores = scores.sum(dim=(1, 3))
    keep = torch.ones(scores.numel())
    keep[scores.flatten().argsort(stable=True)[:round(sparsity * scores.numel())]] = 0
    keep = keep.reshape(scores.shape)
    return (keep.repeat_interleave(block.rows, 0).repeat_interleave(block.cols, 1)
            .reshape(weight.shape))



class WeightMask(nn.Module):
    """Parametrization `weight -> weight * mask`; the mask buffer may be updated in place."""

    mask: torch.Tensor            # a buffer, registered in __init__

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class Pruner:
    """Masks on the layers that have a target, moved towards their targets and then baked in."""

    def __init__(self, model: nn.Module, block: BlockShape, targets: dict[str, float]):
        layers = prunable_layers(model, block)
        self.block = block
        self.targets = {name: sparsity for name, sparsity in targets.items() if sparsity > 0}
        self.layers = {name: layers[name] for name in self.targets}
        self.fraction = 0.0
        for module in self.layers.values():
            parametrize.register_parametrization(module, "weight",
                                                 WeightMask(torch.ones_like(module.weight)))

    def prune_to(self, fraction: float) -> None:
        """Every layer to `fraction` of its target; pruned blocks score 0, so masks only grow."""
        if fraction == self.fraction:
            return
        self.fraction = fraction
        with torch.no_grad():
            for name, module in self.layers.items():
                # torch.nn.utils.parametrize adds `parametrizations` at run time
                mask = module.parametrizations.weight[0].mask  # pyright: ignore[reportIndexIssue, reportAttributeAccessIssue]
                mask.copy_(magnitude_mask(module.weight, fraction * self.targets[name], self.block))

    def finish(self) -> None:
        """Bakes the masks into the weights and removes the parametrizations."""
        for module in self.layers.values():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def ramp_fraction(step: int, ramp_steps: int) -> float:
    """Fraction of the final sparsity reached at `step`, on the cubic ramp, updated in
    MASK_UPDATES stages (the last stage begins before the ramp ends, so fine-tuning follows it)."""
    stage_steps = max(1, ramp_steps // MASK_UPDATES)
    progress = min(1.0, (step // stage_steps + 1) * stage_steps / max(1, ramp_steps))
    return 1.0 - (1.0 - progress) ** 3


@dataclass
class FineTuning:
    """A compression fine-tune: `steps` optimizer steps at a constant `lr` on the streamed
    training corpus (no waveform augmentation; SpecAugment as the model trains), on this
    process's ranks (`tinyasr compress ... --nproc N`), as `tinyasr train` takes its steps."""

    steps: int = 300
    lr: float = 3e-4
    batch_seconds: float = 80.0
    grad_clip: float = 5.0
    seed: int = 0
    distill_weight: float = 0.0   # > 0: distil from the model as it was before compression
    accum_grad: int = 1

    def loop_config(self) -> LoopConfig:
        return LoopConfig(seed=self.seed, batch_seconds=self.batch_seconds,
                          accum_grad=self.accum_grad, grad_clip=self.grad_clip)


def teacher_of(model: AsrModel, fine_tuning: FineTuning) -> AsrModel | None:
    """A frozen copy of `model` to distil from while it is compressed, if asked for; taken
    before any mask or fake quantizer is attached."""
    if fine_tuning.distill_weight <= 0:
        return None
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher


def fine_tune(model: AsrModel, tokenizer: Tokenizer, corpus: Corpus, fine_tuning: FineTuning,
              before_step: Callable[[int], None] = lambda step: None,
              description: str = "fine-tune", teacher: AsrModel | None = None,
              context: distributed.Context | None = None,
              precision: torch.dtype | None = None) -> None:
    """`fine_tuning.steps` optimizer steps on `corpus`, epoch after epoch of its stream,
    `before_step(step)` before each, distilled from `teacher` if given. The optimizer is made
    here, after any parametrization has been registered; the model ends on the CPU."""
    context = context or distributed.Context()
    optimizer = torch.optim.AdamW(model.parameters(), lr=fine_tuning.lr, weight_decay=0.0)
    loop = StepLoop(model, optimizer, tokenizer, corpus, AugmentConfig(),
                    fine_tuning.loop_config(), context, precision, teacher,
                    fine_tuning.distill_weight)
    def stream() -> Iterator[tuple[int, list]]:
        """(epoch, micro-batches) for step after step, epoch after epoch."""
        for epoch in itertools.count():
            stepped = False
            for micro in loop.epoch(epoch):
                stepped = True
                yield epoch, micro
            if not stepped:
                raise InputError(f"{corpus.path}: too little audio for one fine-tuning step on "
                                 f"{context.world} process(es) ({loop.batches_per_step} batches "
                                 f"of up to {fine_tuning.batch_seconds:g} s needed)")

    with tqdm(total=fine_tuning.steps, desc=description, dynamic_ncols=True,
              disable=not context.main or verbosity() < 0) as bar:
        # range first: zip stops before asking the stream for a step past the last
        for step, (epoch, micro) in zip(range(fine_tuning.steps), stream(), strict=False):
            before_step(step)
            loss = loop.step(micro, fine_tuning.lr, epoch)
            bar.update()
            bar.set_postfix(loss=f"{loss:.2f}", refresh=False)
    model.cpu().eval()


def prune(model: AsrModel, tokenizer: Tokenizer, block: BlockShape, targets: dict[str, float],
          corpus: Corpus, fine_tuning: FineTuning, context: distributed.Context | None = None,
          precision: torch.dtype | None = None) -> None:
    """Prunes `model` in place to the per-layer `targets` along the cubic ramp while
    fine-tuning on `corpus`; steps=0 prunes in one shot without fine-tuning. Every rank prunes
    its copy alike (the masks follow the weights, which DDP keeps equal)."""
    teacher = teacher_of(model, fine_tuning)
    pruner = Pruner(model, block, targets)
    if fine_tuning.steps:
        ramp_steps = round(fine_tuning.steps * RAMP_FRACTION)
        fine_tune(model, tokenizer, corpus, fine_tuning,
                  lambda step: pruner.prune_to(ramp_fraction(step, ramp_steps)),
                  "prune + fine-tune", teacher, context, precision)
    pruner.prune_to(1.0)
    pruner.finish()


def dev_cer(model: AsrModel, tokenizer: Tokenizer, dev: Sequence[Utterance],
            options: DecodeOptions) -> float:
    return evaluate(Recognizer(model, tokenizer, options), dev).cer.rate


def sensitivity_scan(model: AsrModel, tokenizer: Tokenizer, dev: Sequence[Utterance],
                     block: BlockShape, levels: Sequence[float],
                     options: DecodeOptions) -> dict:
    """Dev CER with one layer at a time pruned in one shot to each level (model left as it was):
    {"baseline": cer, "layers": {name: {"params": n, "cer": {level: cer}}}}."""
    scan = {"baseline": dev_cer(model, tokenizer, dev, options), "layers": {}}
    layers = prunable_layers(model, block)
    for name, module in tqdm(layers.items(), desc="sensitivity scan", dynamic_ncols=True):
        original = module.weight.detach().clone()
        cers = {}
        for level in levels:
            with torch.no_grad():
                module.weight.copy_(original * magnitude_mask(original, level, block))
            cers[f"{level:.3f}"] = dev_cer(model, tokenizer, dev, options)
        with torch.no_grad():
            module.weight.copy_(original)
        scan["layers"][name] = {"params": original.numel(), "cer": cers}
    return scan


def scan_levels(target: float) -> list[float]:
    return sorted({round(min(MAX_SPARSITY, fraction * target), 3) for fraction in SCAN_FRACTIONS})


def layer_targets(scan: dict, tolerance: float) -> dict[str, float]:
    """Each scanned layer's largest level whose one-shot dev CER rise is <= tolerance (else 0)."""
    targets = {}
    for name, result in scan["layers"].items():
        allowed = [float(level) for level, cer in result["cer"].items()
                   if cer - scan["baseline"] <= tolerance]
        targets[name] = max(allowed, default=0.0)
    return targets


def usable_examples(fbanks: Sequence[torch.Tensor], token_ids: Sequence[list[int]],
                    where: object) -> tuple[list[torch.Tensor], list[list[int]]]:
    """The examples long enough for one encoder frame (7 fbank frames, 0.085 s): the conv
    subsampling has nothing to compute on shorter ones. A warning names how many of `where`'s
    were left out; none left is an InputError."""
    keep = [i for i, fbank in enumerate(fbanks)
            if Conv2dSubsampling4.output_lengths(len(fbank)) >= 1]
    if not keep:
        raise InputError(f"{where}: no utterance is long enough to train on "
                         f"(all {len(fbanks)} are under 0.085 s)")
    if len(keep) < len(fbanks):
        warn(f"{where}: left out {len(fbanks) - len(keep)} utterances under 0.085 s "
             "(too short for one encoder frame)")
    return [fbanks[i] for i in keep], [token_ids[i] for i in keep]


def check_usable_corpus(corpus: Corpus, seed: int) -> None:
    """An InputError unless `corpus` holds an utterance long enough for one encoder frame
    (wav headers are read until the first one is found)."""
    for entry in corpus.entries(seed, 0):
        if (not isinstance(entry, BadUtterance)
                and Conv2dSubsampling4.output_lengths(num_frames(entry.samples)) >= 1):
            return
    raise InputError(f"{corpus.path}: no utterance is long enough to train on "
                     f"(all {len(corpus)} are under 0.085 s or unreadable)")


def check_block_fits(model: nn.Module, block: BlockShape) -> dict[str, PrunableLayer]:
    """The layers `block` can prune (prunable_layers, the first conv aside); an InputError when
    it divides none of them, since pruning would then change nothing, and a warning naming how
    many stay dense when it divides only some."""
    candidates = [name for name, module in model.named_modules()
                  if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and name != FIRST_CONV]
    layers = prunable_layers(model, block)
    fitting = [name for name in candidates if name in layers]
    if not fitting:
        raise InputError(f"--block {block}: divides no layer's weight matrix, so nothing would "
                         "be pruned (try 1x1, 1x4, 4x1 or 4x4)")
    if len(fitting) < len(candidates):
        warn(f"--block {block}: {len(candidates) - len(fitting)} of {len(candidates)} layers do "
             f"not divide into {block} blocks and stay dense")
    return layers


def check_sparsity(value: float, what: str) -> float:
    if not 0.0 < value < 1.0:
        raise InputError(f"{what}: sparsity must be in (0, 1), got {value}")
    return value


def pruned_block(model_dir: Path) -> BlockShape | None:
    """The block shape a model dir was pruned with (pruning.json), or None if it was not."""
    record = model_dir / PRUNING_FILE
    if not record.is_file():
        return None
    try:
        return BlockShape.parse(json.loads(record.read_text())["block"])
    except (ValueError, KeyError, InputError) as error:
        raise InputError(f"{record}: bad pruning record ({error})") from None
