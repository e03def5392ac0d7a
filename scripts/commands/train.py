"""`tinyasr train`: train a model on a data dir (train/ and dev/ splits), in one process or
several (data-parallel, `--nproc`, or under torchrun)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.scripts.arguments import check_distill_weight, check_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (resumes if --out holds an interrupted run)",
        description="Train with joint CTC/attention loss on streamed, augmented data. "
                    "Checkpoints are written atomically; run the same command again (with any "
                    "--nproc) to resume after an interruption. Under torchrun, each rank runs "
                    "this command without --nproc.")
    parser.add_argument("--data", type=Path, required=True,
                        help="corpus dir with train/ (a Kaldi data dir, or shards from "
                             "`tinyasr data shard`) and dev/ (a Kaldi data dir)")
    parser.add_argument("--config", type=Path, required=True, help="recipe JSON (model/configs/)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--epochs", type=int,
                        help="override the recipe's epoch count (e.g. to end a resumed run "
                             "early, or extend it)")
    parser.add_argument("--teacher", type=Path, metavar="MODEL_DIR",
                        help="distill from this trained model (same tokens); may be added when "
                             "resuming a run, to go on training it with distillation")
    parser.add_argument("--distill-weight", type=float, metavar="W",
                        help="share of the loss that is the KL to the teacher (default 0.5)")
    parser.add_argument("--nproc", type=int, default=1,
                        help="data-parallel training processes on this machine (default 1; at "
                             "most one per core, or per GPU with --device cuda)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto (default): cuda if a GPU is visible, else cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast precision (default fp32; fp16 needs cuda and uses loss "
                             "scaling)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per process (default: 2, or the cores shared out "
                             "over --nproc)")
    parser.set_defaults(func=run)


def child_command(args: argparse.Namespace, threads: int) -> list[str]:
    """The command each rank runs: this one, its options spelt out, without the launcher's."""
    command = [sys.executable, "-m", "tinyasr.scripts.cli", "train", "--data", str(args.data),
               "--config", str(args.config), "--out", str(args.out), "--device", args.device,
               "--precision", args.precision, "--threads", str(threads)]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.teacher is not None:
        command += ["--teacher", str(args.teacher)]
    if args.distill_weight is not None:
        command += ["--distill-weight", str(args.distill_weight)]
    if getattr(args, "quiet", False):
        command.append("-q")
    command += ["-v"] * getattr(args, "verbose", 0)
    return command


def run(args: argparse.Namespace) -> int:
    import torch

    from tinyasr.model.training import distributed
    from tinyasr.model.training.train import Recipe, Trainer, preflight

    recipe = Recipe.load(args.config)
    check_output_dir(args.out, "--out")
    if args.epochs is not None:
        if args.epochs < 1:
            raise InputError(f"--epochs must be at least 1, not {args.epochs}")
        recipe.train.epochs = args.epochs
    if args.teacher is not None:
        recipe.train.teacher = str(args.teacher)
    if args.distill_weight is not None:
        check_distill_weight(args.distill_weight)
        recipe.train.distill_weight = args.distill_weight
    if args.nproc < 1:
        raise InputError(f"--nproc must be at least 1, not {args.nproc}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, not {args.threads}")
    launched = "WORLD_SIZE" in os.environ       # a rank of torchrun or of our launcher
    world = int(os.environ.get("LOCAL_WORLD_SIZE",
                               os.environ.get("WORLD_SIZE", str(args.nproc))))
    device = distributed.resolve_device(args.device, 1 if launched else args.nproc)
    precision = distributed.check_precision(args.precision, device)
    threads = args.threads or max(1, min(2, distributed.usable_cores() // max(world, 1)))
    mmap_threshold = distributed.mmap_threshold()
    if args.nproc > 1 and not launched:
        preflight(args.data, recipe, args.out)
        return distributed.launch(child_command(args, threads), args.nproc)
    torch.set_num_threads(threads)
    distributed.fix_mmap_threshold(mmap_threshold)
    context = distributed.init(device)
    try:
        final = Trainer(args.data, recipe, args.out, context, precision).run()
    except RuntimeError as error:
        if not (context.distributed and distributed.is_lost_peer(error)):
            raise
        print(f"tinyasr: error: rank {context.rank}: lost the other ranks "
              f"({distributed.first_line(error)})", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
    if final is not None:
        print(f"model written to {final}")
    return 0
