"""`tinyasr tune`: MetaSchedule (XGBoost cost model) over a model's tasks for one device."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.scripts.arguments import add_model_argument, add_target_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tune", help="tune a model's kernels for a device (MetaSchedule + XGBoost)",
        description="Tune each task of the compiled model with MetaSchedule's XGBoost cost "
                    "model, measuring on this machine. Records are appended to a JSON "
                    "database; re-running continues from the records already there.")
    add_model_argument(parser)
    add_target_argument(parser, " (only boards this machine runs natively can measure so far)")
    parser.add_argument("--trials", type=int, required=True, metavar="N",
                        help="trials per task, counting those already in the database")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="database directory (default: the device's own, "
                             "schedules/<board>/ or schedules/host-<cpu>/, which compile applies)")
    parser.add_argument("--time-budget", type=float, metavar="MIN",
                        help="start no new task after MIN minutes")
    parser.add_argument("--ops", nargs="+", metavar="NAME",
                        help="tune only tasks whose name contains one of these (e.g. matmul)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.compile.compressed_import import load_for_compile
    from tinyasr.compile.pipeline import IRDumper, import_model
    from tinyasr.model.errors import InputError
    from tinyasr.schedules.database import default_database_dir, device_name
    from tinyasr.schedules.tune import tune
    from tinyasr.targets.boards import board_target, get_board

    board = get_board(args.target)
    if not board.is_host:
        raise InputError(f"--target {board.name}: tuning measures on this machine, so only "
                         "boards it runs natively can be tuned so far")
    if args.trials < 1:
        raise InputError(f"--trials {args.trials}: must be at least 1")
    target = board_target(board)
    work_dir = args.work_dir or default_database_dir(board.name, target)
    model, _ = load_for_compile(args.model)
    results = tune(import_model(model, IRDumper(None)), device_name(board.name, target),
                   target, work_dir, args.trials, args.ops, args.time_budget)
    print(f"{work_dir}: {len(results)} tasks")
    for result in results:
        best = "-" if result.best_us is None else f"{result.best_us:10.1f} us"
        print(f"  {result.name:<60s} {result.trials:5d} trials  best {best}")
    return 0
