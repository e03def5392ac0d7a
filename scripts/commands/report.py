"""`tinyasr report`: the compression table (size, ratio, dev/test CER per stage) as Markdown,
JSON and a PNG plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.decoding.options import DecodeMode
from tinyasr.scripts.arguments import beam_width, check_output_dir, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="measure compression stages: bytes, ratio, dev/test CER",
        description="One row per stage, in the order given; the first is the baseline of the "
                    "ratio. A stage is NAME=PATH: a compressed .tac file, or a model dir "
                    "(packed to fp32 first). Writes report.md, report.json, report.png.")
    parser.add_argument("stages", nargs="+", metavar="NAME=PATH")
    parser.add_argument("--data", type=Path, required=True, help="corpus with dev/ and test/")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--mode", choices=[m.value for m in DecodeMode],
                        default=DecodeMode.ATTENTION_RESCORING.value)
    parser.add_argument("--beam", type=beam_width, default=10)
    parser.add_argument("--max-utterances", type=positive_int,
                        help="decode a fixed random subset of dev and of test (default: all)")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tinyasr.model.compression.report import make_report, parse_stage
    from tinyasr.model.decoding.options import DecodeOptions

    torch.set_num_threads(args.threads)
    stages = [parse_stage(stage) for stage in args.stages]
    check_stages(stages)
    check_output_dir(args.out, "--out")
    make_report(stages, args.data, args.out, DecodeOptions(DecodeMode(args.mode), args.beam),
                args.max_utterances)
    print(f"report written to {args.out}/report.md, report.json, report.png")
    return 0


def check_stages(stages: list[tuple[str, Path]]) -> None:
    """Every stage's name once and its model readable, before the first is measured (a later
    stage's typo would otherwise cost every earlier stage's decoding)."""
    from tinyasr.model.common.errors import InputError
    from tinyasr.model.network.compressed import read_compressed
    from tinyasr.model.network.model_dir import load_model_dir

    names = [name for name, _ in stages]
    for name in names:
        if names.count(name) > 1:
            raise InputError(f"stage {name!r}: named more than once (each row needs its own "
                             "name)")
    for _, path in stages:
        if path.is_file():
            read_compressed(path)
        else:
            load_model_dir(path)
