"""`tinyasr tune`: MetaSchedule (XGBoost cost model) over a model's tasks for one device."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.scripts.arguments import (
    add_model_argument,
    add_target_argument,
    check_output_dir,
    positive_number,
    tracker_address,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tune", help="tune a model's kernels for a device (MetaSchedule + XGBoost)",
        description="Tune each task of the compiled model with MetaSchedule's XGBoost cost "
                    "model, measuring on this machine or, with --tracker, on boards behind a "
                    "TVM RPC tracker (candidates cross-linked here). Records are appended to "
                    "the device's JSON database; re-running continues from the records there.")
    add_model_argument(parser, "; whisper-tiny.en or a converted Whisper dir tunes Whisper")
    add_target_argument(parser)
    parser.add_argument("--tracker", metavar="HOST:PORT", type=tracker_address,
                        help="measure on boards behind this tracker (needed for a board this "
                             "machine cannot run)")
    parser.add_argument("--key", help="the boards' tracker key (default: the target's name)")
    parser.add_argument("--trials", type=int, required=True, metavar="N",
                        help="trials per task, counting those already in the database; 0 runs no "
                             "trials, only brings the replay timings up to date")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="database directory (default: the device's own, "
                             "schedules/<board>/ or schedules/host-<cpu>/, which compile applies)")
    parser.add_argument("--time-budget", type=positive_number, metavar="MIN",
                        help="start no new task after MIN minutes")
    parser.add_argument("--ops", nargs="+", metavar="NAME",
                        help="tune only tasks whose name contains one of these (e.g. matmul)")
    parser.add_argument("--int8", action="store_true",
                        help="Whisper only: tune the int8 deployable (`compile --int8`); a SAN-M "
                             "model's int8 layers come from its .tac")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.compile.compressed_import import load_for_compile
    from tinyasr.compile.pipeline import IRDumper, import_model
    from tinyasr.compile.schedule_database import default_database_dir, device_name
    from tinyasr.model.common.errors import InputError
    from tinyasr.model.decoding.recognizers import whisper_model_dir
    from tinyasr.schedules.measure import board_measurement
    from tinyasr.schedules.tune import tune
    from tinyasr.targets.boards import board_target, get_board

    board = get_board(args.target)
    if not board.is_host and args.tracker is None:
        raise InputError(f"--target {board.name}: this machine cannot run its code; measure on "
                         "boards with --tracker HOST:PORT [--key KEY]")
    if args.trials < 0 or (args.trials == 0 and args.tracker):
        raise InputError(f"--trials {args.trials}: must be at least 1 (0, re-timing the "
                         "tuned schedules, measures on this machine only)")
    measurement = board_measurement(board, args.tracker, args.key) if args.tracker else None
    target = board_target(board)
    work_dir = args.work_dir or default_database_dir(board.name, target)
    check_output_dir(work_dir, "--work-dir")
    whisper = whisper_model_dir(args.model)
    if whisper is not None:
        from tinyasr.compile.whisper_deployable import import_whisper_dir

        imported = import_whisper_dir(whisper, target, IRDumper(None), args.int8)[0]
    elif args.int8:
        raise InputError(f"--int8: {args.model} is a SAN-M model; tune its int8 .tac (made by "
                         "`tinyasr compress quantize`)")
    else:
        imported = import_model(load_for_compile(args.model)[0], IRDumper(None))
    results = tune(imported, device_name(board.name, target), target, work_dir, args.trials,
                   args.ops, args.time_budget, measurement)
    print(f"{work_dir}: {len(results)} tasks")
    for result in results:
        best = "-" if result.best_us is None else f"{result.best_us:10.1f} us"
        print(f"  {result.name:<60s} {result.trials:5d} trials  best {best}")
    return 0
