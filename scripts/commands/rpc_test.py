"""`tinyasr rpc-test`: a compiled deployable on a board behind a TVM tracker, checked against the
host."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.scripts.arguments import (
    check_output_path,
    non_negative_number,
    positive_number,
    tracker_address,
)

# tinyasr.targets.rpc_check.UTTERANCE_DEADLINE, kept equal by tests/test_cli.py: that module
# (numpy, TVM's RPC) is imported only when the command runs.
UTTERANCE_DEADLINE = 300.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rpc-test", help="run a deployable on a board through a TVM tracker and check it",
        description="Request a board from the tracker, upload the deployable, transcribe each "
                    "utterance on the board and compare log-probs and transcripts with the "
                    "PyTorch reference on this machine; report CER and on-board latency. A "
                    "Whisper deployable is held to PyTorch's greedy transcripts (int8: within "
                    "compile/parity.py's text rule).")
    parser.add_argument("deployable", type=Path, metavar="DEPLOYABLE",
                        help="directory made by `tinyasr compile`")
    parser.add_argument("--tracker", required=True, metavar="HOST:PORT", type=tracker_address)
    parser.add_argument("--key", required=True, help="the board key registered with the tracker")
    parser.add_argument("--data", type=Path, default=SAMPLES_DIR,
                        help="Kaldi data dir (default: the bundled samples)")
    parser.add_argument("--json", type=Path, help="write results here, after every utterance")
    parser.add_argument("--tolerance", type=non_negative_number, default=1e-3,
                        help="max abs difference allowed between board and host log-probs of "
                             "an fp32 deployable (int8 ones, whose roundings may flip on "
                             "another CPU, are held to nearly every frame's most likely token "
                             "and nearly the same transcript: compile/parity.py)")
    parser.add_argument("--deadline", type=positive_number, default=UTTERANCE_DEADLINE,
                        metavar="SEC",
                        help="seconds one utterance may take on a board before the board counts "
                             "as hung (default: %(default)g)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.compile.deployable import source_model
    from tinyasr.compile.family import WHISPER, deployable_family
    from tinyasr.model.common.errors import InputError
    from tinyasr.targets.boards import BOARDS, check_features, get_board
    from tinyasr.targets.rpc_check import format_table, run_rpc_test

    check_output_path(args.json, "--json")   # before the work, not after it
    # The key names the board when it is one of ours: then a library for another
    # architecture is refused before upload. Otherwise trust the deployable's own target.
    whisper = deployable_family(args.deployable) == WHISPER
    if whisper:   # checked as its family's runner checks it
        from tinyasr.compile.whisper_manifest import read_whisper_manifest as read_manifest
    else:
        from tinyasr.compile.deployable import read_manifest
    manifest = read_manifest(args.deployable)
    board = get_board(args.key if args.key in BOARDS else manifest["target"])
    if manifest["arch"] != board.arch:
        raise InputError(f"{args.deployable}: built for {manifest['target']} ({manifest['arch']}), "
                         f"not for {board.name} ({board.arch})")
    check_features(args.deployable, manifest, board)
    source_model(args.deployable, manifest)   # the reference it is compared with
    results = run_rpc_test(args.deployable, board, args.tracker, args.key, args.data, args.json,
                           args.tolerance, deadline=args.deadline)
    print(format_table(results, whisper))
    return 0 if all(r.ok for r in results) else 1
