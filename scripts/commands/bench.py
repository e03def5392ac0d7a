"""`tinyasr bench`: latency, real-time factor, memory, size and GFLOP/s of every runtime on the
same utterances, as Markdown, JSON and a PNG chart."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.common.progress import progress
from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL, DEFAULT_MODEL
from tinyasr.scripts.arguments import beam_width, check_output_dir, positive_int

MAX_SECONDS = 600.0   # the encoder's attention is quadratic in length: longer is not a bench


def lengths(text: str) -> tuple[float, ...]:
    """'1,5,10,20' -> (1.0, 5.0, 10.0, 20.0): positive seconds, comma-separated."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < value <= MAX_SECONDS for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds in (0, {MAX_SECONDS}] "
                                         "like 1,5,10,20")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark PyTorch, ONNX Runtime and TVM on the same utterances",
        description="Rows: torch eager fp32, torch dynamic int8, ONNX Runtime fp32 and int8, "
                    "TVM fp32, int8 and sparse+int8 deployables (tuned when the host's tuning "
                    "database applies; then an untuned fp32 build is the baseline row). Each row "
                    "runs in its own process. Per row: median encoder and "
                    "whole-pipeline latency for a fixed utterance (5 s), real-time "
                    "factor, speedup over the fastest PyTorch/ONNX Runtime row, peak RSS, "
                    "artifact bytes, GFLOP/s vs the core's peak; and latency per --lengths. "
                    "Writes bench.json, bench.md, bench.png into --out.")
    parser.add_argument("--fp32-model", type=Path, default=DEFAULT_MODEL, metavar="DIR",
                        help="fp32 model directory (default: the shipped model)")
    parser.add_argument("--int8-model", type=Path, default=COMPRESSED_MODEL, metavar="TAC",
                        help="int8 .tac for the TVM int8 row (default: the shipped one)")
    parser.add_argument("--sparse-model", type=Path, metavar="TAC",
                        help="sparse+int8 .tac for its TVM row (skipped when not given)")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--lengths", type=lengths, default="1,5,10,20", metavar="S,S,...",
                        help="audio lengths in seconds for the scaling table "
                             "(default: %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=10,
                        help="timed runs per length, after one warm-up (median reported)")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="rounds of every row in turn; each row's median over its rounds "
                             "is reported (default: %(default)s)")
    parser.add_argument("--mode", choices=[m.value for m in DecodeMode],
                        default=DecodeMode.ATTENTION_RESCORING.value)
    parser.add_argument("--beam", type=beam_width, default=10)
    parser.add_argument("--out", type=Path, required=True, help="directory for the results")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.schedules.bench.run import BenchSettings, write_bench

    check_output_dir(args.out, "--out")   # before minutes of measuring
    settings = BenchSettings(args.fp32_model, args.int8_model, args.sparse_model, args.lengths,
                             args.threads, args.repeats,
                             DecodeOptions(DecodeMode(args.mode), args.beam), args.rounds)
    write_bench(settings, args.out, progress)   # progress: stderr, silenced by -q
    print(f"bench written to {args.out}/bench.md, bench.json, bench.png")
    return 0
