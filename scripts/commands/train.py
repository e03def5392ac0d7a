"""`tinyasr train`: train a model on a data dir (train/ and dev/ splits)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (resumes if --out holds an interrupted run)",
        description="Train with joint CTC/attention loss. Checkpoints are written atomically; "
                    "run the same command again to resume after an interruption.")
    parser.add_argument("--data", type=Path, required=True,
                        help="corpus dir with train/ and dev/ Kaldi data dirs")
    parser.add_argument("--config", type=Path, required=True, help="recipe JSON (model/configs/)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.model.train import Recipe, Trainer

    torch.set_num_threads(args.threads)
    final = Trainer(args.data, Recipe.load(args.config), args.out).run()
    print(f"model written to {final}")
    return 0
