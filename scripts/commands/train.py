"""`tinyasr train`: train a model on a data dir (train/ and dev/ splits), in one process or
several (data-parallel, `--nproc`, or under torchrun)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.scripts.arguments import check_distill_weight, check_output_dir
from tinyasr.scripts.ranks import add_rank_arguments, launch_ranks, plan_ranks, run_as_rank


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
    add_rank_arguments(parser, "training")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    ranks = plan_ranks(args)
    if ranks.launch:
        preflight(args.data, recipe, args.out)
        return launch_ranks(args, ranks)

    def train(context: distributed.Context) -> int:
        final = Trainer(args.data, recipe, args.out, context, ranks.precision).run()
        if final is not None:
            print(f"model written to {final}")
        return 0

    return run_as_rank(ranks, train)
