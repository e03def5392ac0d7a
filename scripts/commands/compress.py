"""`tinyasr compress prune|quantize|pack`: sparsify a model dir, or write it as a compressed
file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tinyasr.model.common.errors import InputError
from tinyasr.scripts.arguments import (
    check_distill_weight,
    check_output_dir,
    check_output_path,
    non_negative_number,
    positive_int,
    positive_number,
)
from tinyasr.scripts.ranks import add_rank_arguments, launch_ranks, plan_ranks, run_as_rank

if TYPE_CHECKING:
    from tinyasr.model.training.distributed import Context


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compress", help="prune, quantize or pack a model")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    prune = actions.add_parser(
        "prune", help="magnitude pruning with a cubic ramp and fine-tuning",
        description="Prune Linear/Conv weights in blocks to a target sparsity while fine-tuning; "
                    "writes a model dir with pruning.json (block shape, sparsity per layer).")
    prune.add_argument("model", type=Path, help="model directory")
    prune.add_argument("--data", type=Path, required=True, help="corpus with train/ and dev/")
    prune.add_argument("--sparsity", type=float, required=True, help="target fraction in (0, 1)")
    prune.add_argument("--block", default="1x1", help="block shape ROWSxCOLS: 1x1 (unstructured), "
                                                      "1x4, 4x1, 4x4, ... (default 1x1)")
    prune.add_argument("--out", type=Path, help="output model directory (optional with --scan)")
    prune.add_argument("--steps", type=int, default=300,
                       help="fine-tuning steps (0: one-shot pruning; default 300)")
    prune.add_argument("--lr", type=positive_number, default=3e-4, help="fine-tuning learning rate")
    prune.add_argument("--distill-weight", type=float, default=0.0, metavar="W",
                       help="share of the fine-tuning loss that is the KL to the unpruned "
                            "model (knowledge distillation; default 0: none)")
    prune.add_argument("--batch-seconds", type=positive_number, default=80.0,
                       help="audio per batch")
    prune.add_argument("--train-utterances", type=int, metavar="N",
                       help="fine-tune on a seeded sample of N training utterances (default: "
                            "all; streamed, as training streams them)")
    prune.add_argument("--scan", action="store_true",
                       help="measure each layer's dev-CER sensitivity and set per-layer targets")
    prune.add_argument("--tolerance", type=non_negative_number, default=1.0,
                       help="with --scan: largest one-shot dev CER rise (absolute %%) a layer may "
                            "take at its sparsity (default 1.0)")
    prune.add_argument("--scan-utterances", type=positive_int, default=100,
                       help="dev utterances the scan decodes (default 100)")
    prune.add_argument("--scan-from", type=Path, metavar="PRUNING_JSON",
                       help="reuse the scan recorded in an earlier run's pruning.json "
                            "(same block shape) instead of measuring again")
    prune.add_argument("--layer", action="append", default=[], metavar="NAME=S",
                       help="per-layer sparsity override (0 keeps the layer dense); repeatable")
    add_rank_arguments(prune, "fine-tuning")
    prune.set_defaults(func=run_prune)

    quantize = actions.add_parser(
        "quantize", help="int8 weights (per output channel) and activations: a compressed file",
        description="Post-training int8 quantization into one compressed model file (BSR for "
                    "pruned weights when the model dir has pruning.json).")
    quantize.add_argument("model", type=Path, help="model directory (pruned or not)")
    quantize.add_argument("--out", type=Path, required=True, help="compressed file (.tac)")
    quantize.add_argument("--data", type=Path,
                          help="corpus whose train/ calibrates static activation scales")
    quantize.add_argument("--activations", choices=["static", "dynamic", "none"],
                          default="static", help="int8 activations: per tensor calibrated "
                          "(static), per row at run time (dynamic), or fp32 (none)")
    quantize.add_argument("--calibration-utterances", type=positive_int, default=300)
    quantize.add_argument("--keep-fp32", action="append", default=[], metavar="LAYER",
                          help="keep this layer's weights fp32 (module name); repeatable")
    quantize.add_argument("--qat-steps", type=int, default=0,
                          help="quantization-aware fine-tuning steps after calibration, for "
                               "when post-training rounding costs too much (default 0)")
    quantize.add_argument("--lr", type=positive_number, default=1e-4, help="QAT learning rate")
    quantize.add_argument("--distill-weight", type=float, default=0.0, metavar="W",
                          help="share of the QAT loss that is the KL to the fp32 model "
                               "(knowledge distillation; default 0: none)")
    quantize.add_argument("--batch-seconds", type=positive_number, default=80.0,
                          help="QAT audio per batch")
    add_rank_arguments(quantize, "fine-tuning (with --qat-steps)")
    quantize.set_defaults(func=run_quantize)

    pack = actions.add_parser("pack", help="fp32 compressed file (BSR for pruned weights)")
    pack.add_argument("model", type=Path, help="model directory (pruned or not)")
    pack.add_argument("--out", type=Path, required=True, help="compressed file (.tac)")
    pack.set_defaults(func=run_pack)


def parse_layer_overrides(values: list[str]) -> dict[str, float]:
    """--layer NAME=S values; the names are checked against the model's layers once loaded."""
    overrides = {}
    for value in values:
        name, _, sparsity = value.partition("=")
        try:
            overrides[name] = float(sparsity)
        except ValueError:
            raise InputError(f"--layer {value}: expected NAME=SPARSITY") from None
        if not 0.0 <= overrides[name] < 1.0:
            raise InputError(f"--layer {value}: sparsity must be in [0, 1)")
    return overrides


def print_scan(scan: dict, targets: dict[str, float]) -> None:
    levels = list(next(iter(scan["layers"].values()))["cer"])
    print(f"sensitivity: dev CER {scan['baseline']:.2f}% unpruned; CER rise with one layer pruned")
    print(f"{'layer':48s} {'params':>8s} " + " ".join(f"{'@' + level:>7s}" for level in levels)
          + "  target")
    for name, result in scan["layers"].items():
        rises = " ".join(f"{cer - scan['baseline']:+7.2f}" for cer in result["cer"].values())
        print(f"{name:48s} {result['params']:8d} {rises}  {targets.get(name, 0.0):.3f}")


def run_prune(args: argparse.Namespace) -> int:
    from tinyasr.model.compression.prune import FineTuning, check_sparsity
    from tinyasr.model.compression.recipes import SensitivityScan, prune_model_dir
    from tinyasr.model.network.sparsity import BlockShape

    sparsity = check_sparsity(args.sparsity, "--sparsity")
    block = BlockShape.parse(args.block)
    if args.out is None and not args.scan:
        raise InputError("--out: required unless --scan only measures sensitivity")
    if args.out is not None:
        check_output_dir(args.out, "--out")
    if args.steps < 0:
        raise InputError(f"--steps: must be >= 0, got {args.steps}")
    check_distill_weight(args.distill_weight)
    if args.train_utterances is not None and args.train_utterances < 1:
        raise InputError(f"--train-utterances: must be >= 1, got {args.train_utterances}")
    overrides = parse_layer_overrides(args.layer)
    scan = (SensitivityScan(args.tolerance, args.scan_utterances, args.scan_from)
            if args.scan or args.scan_from else None)
    ranks = plan_ranks(args)
    if ranks.launch and args.out is not None:     # a scan alone runs in one process
        return launch_ranks(args, ranks)

    def prune(context: Context) -> int:
        # every rank scans alike (the scan decodes on one core; ranks run side by side)
        result = prune_model_dir(
            args.model, args.data, args.out, sparsity, block,
            FineTuning(steps=args.steps, lr=args.lr, batch_seconds=args.batch_seconds,
                       distill_weight=args.distill_weight),
            train_utterances=args.train_utterances, scan=scan, layer_overrides=overrides,
            on_targets=print_scan if context.main else None, context=context,
            precision=ranks.precision)
        if args.out is not None and context.main:
            print(f"{args.out}: {result.zero_fraction:.1%} of all {result.parameters} "
                  f"parameters are zero ({block} blocks, {args.steps} fine-tuning steps)")
        return 0

    return run_as_rank(ranks, prune)


def check_output_file(path: Path) -> None:
    """A .tac file to write: not a directory; missing parent directories are made, as for
    every other output (check_output_path)."""
    if path.is_dir():
        raise InputError(f"--out {path}: is a directory; give a file name such as model.tac")
    check_output_path(path, "--out")


def run_quantize(args: argparse.Namespace) -> int:
    from tinyasr.model.compression.prune import FineTuning
    from tinyasr.model.compression.recipes import quantize_model_dir
    from tinyasr.model.network.int8 import Activations

    check_output_file(args.out)
    activations = Activations(args.activations)
    if activations == Activations.STATIC and args.data is None:
        raise InputError("--data: static activation scales need calibration data (a corpus "
                         "with train/); or use --activations dynamic")
    if args.qat_steps and args.data is None:
        raise InputError("--data: quantization-aware fine-tuning needs training data")
    check_distill_weight(args.distill_weight)
    if args.calibration_utterances < 1 or args.qat_steps < 0:
        raise InputError("--calibration-utterances must be >= 1 and --qat-steps >= 0")
    qat = FineTuning(steps=args.qat_steps, lr=args.lr, batch_seconds=args.batch_seconds,
                     distill_weight=args.distill_weight)
    ranks = plan_ranks(args)
    if ranks.launch and args.qat_steps:
        return launch_ranks(args, ranks)

    def quantize(context: Context) -> int:
        result = quantize_model_dir(args.model, args.out, activations, args.data,
                                    args.calibration_utterances, args.keep_fp32, qat,
                                    context=context, precision=ranks.precision)
        if context.main:
            print(f"{args.out}: {result.size} bytes ({result.int8_layers} int8 layers, "
                  f"{activations.value} activations)")
        return 0

    return run_as_rank(ranks, quantize)    # without QAT, one process whatever --nproc


def run_pack(args: argparse.Namespace) -> int:
    from tinyasr.model.compression.recipes import pack_model_dir

    check_output_file(args.out)
    print(f"{args.out}: {pack_model_dir(args.model, args.out)} bytes (fp32)")
    return 0
