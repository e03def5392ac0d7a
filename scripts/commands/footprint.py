"""`tinyasr footprint`: per board, the bytes a model's deployable and static transcriber take
and the transcriber's peak memory per utterance length, and the same of the one program
`compile --static` links, as Markdown, JSON and a PNG chart."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.common.progress import progress
from tinyasr.model.decoding.options import DecodeMode
from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL
from tinyasr.scripts.arguments import check_output_dir
from tinyasr.scripts.commands.bench import lengths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "footprint", help="bytes to copy to each board and the transcriber's peak memory",
        description="Compiles the model for each board (with --static), builds its "
                    "tinyasr-run-static, and reports the three files' bytes and the "
                    "transcriber's peak RSS for one utterance per --lengths (the bundled samples "
                    "cut to length), natively for the host and under qemu-user for boards, and "
                    "the same of the one program tinyasr-transcribe. Writes footprint.json, "
                    "footprint.md and footprint.png into --out.")
    parser.add_argument("--model", type=Path, default=COMPRESSED_MODEL, metavar="MODEL",
                        help="model dir or .tac (default: the shipped int8 model)")
    parser.add_argument("--boards", default="host,rpi4", metavar="NAME,NAME,...",
                        help="boards to compile for (default: host,rpi4)")
    parser.add_argument("--lengths", type=lengths, default="5,20", metavar="S,S,...",
                        help="utterance lengths in seconds (default: 5,20)")
    parser.add_argument("--mode", choices=[m.value for m in DecodeMode],
                        default=DecodeMode.ATTENTION_RESCORING.value)
    parser.add_argument("--out", type=Path, required=True, help="directory for the results")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.compile.compressed_import import load_for_compile
    from tinyasr.schedules.bench.footprint import measure_footprint, write_footprint
    from tinyasr.targets.boards import get_board

    boards = [get_board(name.strip()) for name in args.boards.split(",")]
    for board in boards:
        board.require_cross_compiler()
    check_output_dir(args.out, "--out")
    load_for_compile(args.model)   # a bad model is one line before any board's work
    report = measure_footprint(boards, args.model, args.lengths, DecodeMode(args.mode), progress)
    write_footprint(report, args.out)
    print(f"footprint written to {args.out}/footprint.md, footprint.json, footprint.png")
    return 0
