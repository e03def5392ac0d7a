"""`tinyasr export onnx`: a SAN-M model's encode and decode graphs as ONNX files."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.scripts.arguments import add_model_argument, check_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model for other runtimes (ONNX)")
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser(
        "onnx", help="encode.onnx and decode.onnx, for ONNX Runtime",
        description="Write the model's two graphs (those `tinyasr compile` compiles) as ONNX "
                    "(opset 17): encode.onnx, waveform (1, samples) of int16-scale 16 kHz "
                    "samples -> CTC log_probs (1, frames, vocab) and encoded (1, frames, d), "
                    "the fbank front end inside; decode.onnx, the hypotheses' prefix tree "
                    "(tokens, depths, ancestors, history; model/decoding/prefix_tree.py) and "
                    "memory -> "
                    "log_probs (nodes, vocab). Lengths are dynamic.")
    add_model_argument(onnx)
    onnx.add_argument("out", type=Path, metavar="OUT", help="directory to write the files into")
    onnx.set_defaults(func=run_onnx)


def run_onnx(args: argparse.Namespace) -> int:
    from tinyasr.compile.onnx_export import export_onnx
    from tinyasr.model.common.progress import progress
    from tinyasr.model.decoding.recognizer import Recognizer

    check_output_dir(args.out, "OUT")
    model = Recognizer.load(args.model).model
    progress(f"exporting {args.model}")
    for path in export_onnx(model, args.out):
        print(f"{path}\t{path.stat().st_size:,d} bytes")
    return 0
