"""`tinyasr transcribe`: speech to text with a model directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.errors import InputError
from tinyasr.model.model_dir import DEFAULT_MODEL
from tinyasr.model.recognizer import DecodeMode, DecodeOptions
from tinyasr.scripts.arguments import add_decode_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("transcribe", help="print the text of wav files")
    parser.add_argument("inputs", type=Path, nargs="+", metavar="[MODEL] WAV",
                        help="a model directory or .tac file (default: the shipped fp32 model), "
                             "then 16 kHz mono 16-bit wav files")
    parser.add_argument("--model", metavar="NAME|DIR",
                        help="the model, instead of a leading MODEL: a directory, a .tac file "
                             "or whisper-tiny.en (Whisper decodes greedily; --mode/--beam are "
                             "the SAN-M model's)")
    add_decode_arguments(parser)
    parser.add_argument("--lib", type=Path, metavar="DIR",
                        help="run a deployable from `tinyasr compile --target host` instead of "
                             "PyTorch (then every input is a wav file)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyasr.model.datadir import load_wav
    from tinyasr.model.recognizers import load_recognizer

    options = DecodeOptions(DecodeMode(args.mode), args.beam)
    if args.lib is not None:
        from tinyasr.compile.runner import CompiledRecognizer

        recognizer, wavs = CompiledRecognizer.load(args.lib, options), args.inputs
    else:
        model, wavs = ((args.model, args.inputs) if args.model is not None
                       else split_model_and_wavs(args.inputs))
        recognizer = load_recognizer(model, options)
    for wav in wavs:
        print(f"{wav}\t{recognizer.transcribe(load_wav(wav))}")
    return 0


def split_model_and_wavs(inputs: list[Path]) -> tuple[Path, list[Path]]:
    """`MODEL WAV...` or just `WAV...`: a leading directory, .tac file or model name is the
    model."""
    from tinyasr.model.compressed import SUFFIX as COMPRESSED_SUFFIX
    from tinyasr.model.recognizers import is_model_name

    if inputs[0].is_dir() or inputs[0].suffix == COMPRESSED_SUFFIX or is_model_name(inputs[0]):
        if len(inputs) == 1:
            raise InputError(f"{inputs[0]}: no wav files given after the model")
        return inputs[0], inputs[1:]
    return DEFAULT_MODEL, inputs
