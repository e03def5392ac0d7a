"""`tinyasr compile`: a model (directory or .tac) -> one deployable directory for a board."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.scripts.arguments import add_model_argument, add_target_argument, check_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compile", help="compile a model for a board (TVM): library + weights + manifest",
        description="Compile the encoder (with its fbank front end) and the attention decoder "
                    "into one shared library for the board, linked by its cross compiler, with "
                    "the weights beside it (each shared weight stored once).")
    add_model_argument(parser, "; int8 linear layers of a .tac become int8 kernels; "
                               "whisper-tiny.en or a converted Whisper dir compiles Whisper "
                               "(log-mel + encoder, and a KV-cached decoder step)")
    add_target_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="deployable directory to create")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--dump-ir", type=Path, metavar="DIR",
                        help="write the IR after each compiler phase to DIR")
    tuning = parser.add_mutually_exclusive_group()
    tuning.add_argument("--database", type=Path, metavar="DIR",
                        help="tuning database to apply (default: the device's own under "
                             "schedules/, e.g. schedules/rpi4/ or schedules/host-<cpu>/)")
    tuning.add_argument("--untuned", action="store_true",
                        help="ignore tuning databases: TVM's default schedules")
    parser.add_argument("--static", action="store_true",
                        help="also link OUT/tinyasr-transcribe: the board's transcriber with the "
                             "model's code and files in it, one program to copy (run it as "
                             "`tinyasr-transcribe [--beam N] [--mode MODE] WAV...`)")
    parser.add_argument("--int8", action="store_true",
                        help="Whisper only: per-output-channel int8 weights for the linear "
                             "layers (post-training, no data), run by the int8 kernels; a "
                             "SAN-M model is made int8 by `tinyasr compress quantize`")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.compile.build import build_model_deployable
    from tinyasr.compile.deployable import LIBRARY_FILE, WEIGHTS_FILE
    from tinyasr.targets.boards import get_board
    from tinyasr.targets.static_transcriber import static_linker

    board = get_board(args.target)
    check_output_dir(args.out, "--out")   # before the build, not after it
    if args.dump_ir is not None:
        check_output_dir(args.dump_ir, "--dump-ir")
    if args.database is not None and not args.database.is_dir():
        raise InputError(f"--database {args.database}: not a directory (a tuning database is "
                         "a folder, e.g. schedules/rpi4)")
    manifest = build_model_deployable(
        args.model, board, args.out, force=args.force, dump_dir=args.dump_ir,
        database=args.database, untuned=args.untuned, int8=args.int8,
        static=static_linker(board) if args.static else None, int8_name="--int8")
    sizes, database = manifest["bytes"], manifest["tuning_database"]
    print(f"{args.out}: {board.name} ({board.arch})")
    if database is None:
        print("  schedules: untuned (TVM defaults)")
    else:
        print(f"  schedules: {len(database['tuned_functions'])} functions tuned from "
              f"{database['path']} (sha256 {database['sha256'][:12]})")
    print(f"  code     {sizes['code']:>10,d} bytes  {args.out / LIBRARY_FILE}")
    print(f"  weights  {sizes['weights']:>10,d} bytes  {args.out / WEIGHTS_FILE}")
    print(f"  total    {sizes['code'] + sizes['weights']:>10,d} bytes")
    if "static_transcriber" in manifest:
        program = manifest["static_transcriber"]
        print(f"  program  {program['bytes']:>10,d} bytes  {args.out / program['file']} "
              "(everything in one file)")
    return 0

