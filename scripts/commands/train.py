"""`tinyasr train`: train a model on a data dir (train/ and dev/ splits)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tinyasr.model.errors import InputError
from tinyasr.scripts.arguments import check_distill_weight


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (resumes if --out holds an interrupted run)",
        description="Train with joint CTC/attention loss. Checkpoints are written atomically; "
                    "run the same command again to resume after an interruption.")
    parser.add_argument("--data", type=Path, required=True,
                        help="corpus dir with train/ and dev/ Kaldi data dirs")
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
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.model.train import Recipe, Trainer

    torch.set_num_threads(args.threads)
    recipe = Recipe.load(args.config)
    if args.epochs is not None:
        if args.epochs < 1:
            raise InputError(f"--epochs must be at least 1, not {args.epochs}")
        recipe.train.epochs = args.epochs
    if args.teacher is not None:
        recipe.train.teacher = str(args.teacher)
    if args.distill_weight is not None:
        check_distill_weight(args.distill_weight)
        recipe.train.distill_weight = args.distill_weight
    final = Trainer(args.data, recipe, args.out).run()
    print(f"model written to {final}")
    return 0
