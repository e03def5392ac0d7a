"""Whole compression runs on a model dir, as `tinyasr compress prune|quantize|pack` runs them:
load the model, prune (per-layer targets from a sensitivity scan if asked) or quantize
(calibration, quantization-aware fine-tuning), and write the result."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tinyasr.model.common.errors import InputError
from tinyasr.model.compression.prune import (
    FIRST_CONV,
    PRUNING_FILE,
    FineTuning,
    check_block_fits,
    check_usable_corpus,
    layer_targets,
    prune,
    pruned_block,
    scan_levels,
    sensitivity_scan,
    usable_examples,
)
from tinyasr.model.compression.quantize import (
    calibrate,
    quantizable_layers,
    quantization_aware_fine_tune,
)
from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.decoding.options import DecodeOptions
from tinyasr.model.network.compressed import write_compressed
from tinyasr.model.network.int8 import Activations, Quantization
from tinyasr.model.network.model_dir import load_model_dir, save_model_dir
from tinyasr.model.network.sparsity import BlockShape, sparsity_of
from tinyasr.model.training import distributed
from tinyasr.model.training.dataset.sources import Corpus
from tinyasr.model.training.train import load_examples


@dataclass
class SensitivityScan:
    """Per-layer targets from dev CER: measured on `utterances` dev utterances, or the scan an
    earlier run recorded in its pruning.json (`recorded`); a layer gets the largest scanned
    level whose one-shot CER rise is at most `tolerance` (absolute %)."""

    tolerance: float = 1.0
    utterances: int = 100
    recorded: Path | None = None


@dataclass
class PruneResult:
    targets: dict[str, float]        # sparsity asked of each layer
    scan: dict | None                # the sensitivity scan the targets came from, if any
    zero_fraction: float = 0.0       # of all parameters, once pruned (0 when nothing was written)
    parameters: int = 0


def recorded_scan(path: Path, block: BlockShape, layers: set[str]) -> dict:
    """The sensitivity scan an earlier `compress prune --scan` stored in its pruning.json."""
    try:
        record = json.loads(path.read_text())
        scan, recorded_block = record["scan"], record["block"]
        if scan is None or set(scan["layers"]) != layers or recorded_block != str(block):
            raise ValueError(f"holds no scan of these layers with {block} blocks")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"--scan-from {path}: {error}") from None
    return scan


def training_corpus(data: Path, utterances: int | None, seed: int) -> Corpus:
    """`data`/train as the trainer streams it (a Kaldi data dir or shards), or a seeded sample
    of `utterances` of it."""
    corpus = Corpus.open(data / "train")
    corpus = corpus if utterances is None else corpus.sample(utterances, seed)
    check_usable_corpus(corpus, seed)
    return corpus


def check_layer_names(overrides: Mapping[str, float], known: set[str]) -> None:
    """Every overridden layer is one `known` (prunable) layer."""
    for name, sparsity in overrides.items():
        if name not in known:
            raise InputError(f"--layer {name}={sparsity:g}: no prunable layer {name!r} "
                             f"(prunable: {', '.join(sorted(known))})")


def prune_model_dir(model_dir: Path, data: Path, out: Path | None, sparsity: float,
                    block: BlockShape, fine_tuning: FineTuning, *,
                    train_utterances: int | None = None,
                    scan: SensitivityScan | None = None,
                    layer_overrides: Mapping[str, float] | None = None,
                    on_targets: Callable[[dict, dict[str, float]], None] | None = None,
                    context: distributed.Context | None = None,
                    precision: torch.dtype | None = None) -> PruneResult:
    """Prunes the model in `model_dir` to `sparsity` in `block`s (every layer but the first
    conv, or per-layer targets from `scan`; `layer_overrides` on top) while fine-tuning on
    `data`/train (streamed; a seeded sample of `train_utterances` if given) on `context`'s
    ranks, and writes it with pruning.json to `out` (rank 0). `on_targets(scan, targets)` is
    called once a scan has set the targets, before fine-tuning; `out` None stops there."""
    context = context or distributed.Context()
    model, tokenizer = load_model_dir(model_dir)
    layers = check_block_fits(model, block)
    overrides = dict(layer_overrides or {})
    check_layer_names(overrides, set(layers))
    targets = {name: sparsity for name in layers if name != FIRST_CONV}
    corpus = (training_corpus(data, train_utterances, fine_tuning.seed)
              if out is not None else None)
    measured = None
    if scan is not None and scan.recorded is not None:
        measured = recorded_scan(scan.recorded, block, set(layers))
    elif scan is not None:
        dev = read_data_dir(data / "dev")
        dev = random.Random(0).sample(dev, min(scan.utterances, len(dev)))
        measured = sensitivity_scan(model, tokenizer, dev, block, scan_levels(sparsity),
                                    DecodeOptions(beam=4))
    if measured is not None:
        assert scan is not None
        targets = {name: level for name, level in layer_targets(measured, scan.tolerance).items()
                   if name != FIRST_CONV}
        if on_targets is not None:
            on_targets(measured, targets)
    targets.update(overrides)
    result = PruneResult(targets, measured)
    if out is None or corpus is None:
        return result
    prune(model, tokenizer, block, targets, corpus, fine_tuning, context, precision)
    achieved = {name: sparsity_of(module.weight) for name, module in layers.items()}
    pruned = sum(achieved[name] * module.weight.numel() for name, module in layers.items())
    total = sum(p.numel() for p in model.parameters())
    record = {"block": str(block), "target": sparsity, "steps": fine_tuning.steps,
              "distill_weight": fine_tuning.distill_weight,
              "overall_sparsity": pruned / total, "layers": achieved, "scan": measured,
              "scan_from": str(scan.recorded) if scan is not None and scan.recorded else None}
    if context.main:
        save_model_dir(model, tokenizer, out,
                       {PRUNING_FILE: json.dumps(record, indent=2) + "\n"})
    result.zero_fraction, result.parameters = pruned / total, total
    return result


@dataclass
class QuantizeResult:
    size: int            # bytes of the compressed file
    int8_layers: int


def quantize_model_dir(model_dir: Path, out: Path, activations: Activations,
                       data: Path | None = None, calibration_utterances: int = 300,
                       keep_fp32: Sequence[str] = (), qat: FineTuning | None = None,
                       context: distributed.Context | None = None,
                       precision: torch.dtype | None = None) -> QuantizeResult:
    """Writes the model in `model_dir` as a compressed int8 file `out` (BSR for weights pruned in
    blocks; rank 0 writes): static activation scales calibrated on `data`/train, then
    `qat.steps` of quantization-aware fine-tuning there (streamed, on `context`'s ranks) if
    `qat` is given. Every rank calibrates alike: the scales depend only on the data."""
    context = context or distributed.Context()
    model, tokenizer = load_model_dir(model_dir)
    quantization = Quantization(activations, list(quantizable_layers(model, keep_fp32)))
    if activations == Activations.STATIC:
        assert data is not None
        calibrate(model, quantization, *usable_examples(
            *load_examples(model, tokenizer, data / "train", calibration_utterances),
            data / "train"))
    if qat is not None and qat.steps:
        assert data is not None
        quantization_aware_fine_tune(model, tokenizer, quantization,
                                     training_corpus(data, None, qat.seed), qat, context,
                                     precision)
    if not context.main:
        return QuantizeResult(0, len(quantization.layers))
    size = write_compressed(out, model, tokenizer, pruned_block(model_dir), quantization)
    return QuantizeResult(size, len(quantization.layers))


def pack_model_dir(model_dir: Path, out: Path) -> int:
    """Writes the model in `model_dir` as an fp32 compressed file `out` (BSR for weights pruned
    in blocks); returns its size in bytes."""
    model, tokenizer = load_model_dir(model_dir)
    return write_compressed(out, model, tokenizer, pruned_block(model_dir))
