"""`tinyasr transcribe`: speech to text with a model directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.model.common.progress import detail
from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL
from tinyasr.scripts.arguments import add_decode_arguments, check_output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("transcribe", help="print the text of wav files")
    parser.add_argument("inputs", type=Path, nargs="+", metavar="[MODEL] WAV",
                        help="a model directory or .tac file (default: the shipped fp32 model), "
                             "then 16 kHz mono 16-bit wav files; - reads one from stdin")
    parser.add_argument("--model", metavar="NAME|DIR",
                        help="the model, instead of a leading MODEL: a directory, a .tac file "
                             "or whisper-tiny.en (Whisper decodes greedily; --mode/--beam are "
                             "the SAN-M model's)")
    add_decode_arguments(parser)
    parser.add_argument("--lib", type=Path, metavar="DIR",
                        help="run a deployable from `tinyasr compile --target host` instead of "
                             "PyTorch (then every input is a wav file)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write each wav's text, audio seconds and transcription "
                             "seconds here (once every wav is done)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    if sum(str(wav) == STDIN for wav in args.inputs) > 1:   # checked before loading a model
        raise InputError(f"{STDIN}: given more than once (stdin holds one wav)")
    if args.lib is not None and args.model is not None:
        raise InputError("--lib and --model: give one (a deployable, or a model to run in "
                         "PyTorch)")
    check_output_path(args.json, "--json")   # before the work, not after it
    options = DecodeOptions(DecodeMode(args.mode), args.beam)
    source = args.lib   # what the texts came from, for --json
    started = time.perf_counter()
    if args.lib is not None:
        from tinyasr.targets.host.tvm_runtime import use_runtime_only_tvm

        if getattr(args, "owns_process", False):
            use_runtime_only_tvm()   # this process runs the deployable and nothing else
        if _holds_whisper(args.lib):
            from tinyasr.targets.host.whisper_runner import load_compiled_whisper

            recognizer = load_compiled_whisper(args.lib)
        else:
            from tinyasr.targets.host.runner import CompiledRecognizer

            recognizer = CompiledRecognizer.load(args.lib, options)
        wavs = args.inputs
    else:
        from tinyasr.model.decoding.recognizers import load_recognizer

        model, wavs = ((args.model, args.inputs) if args.model is not None
                       else split_model_and_wavs(args.inputs))
        recognizer = load_recognizer(model, options)
        source = model
    from tinyasr.model.data.datadir import SAMPLE_RATE, load_wav

    detail(f"tinyasr: model loaded in {time.perf_counter() - started:.2f} s")
    results = []
    for wav in wavs:
        started = time.perf_counter()
        samples = read_stdin_wav() if str(wav) == STDIN else load_wav(wav)
        text = recognizer.transcribe(samples)
        print(f"{wav}\t{text}", flush=True)
        seconds = time.perf_counter() - started
        results.append({"wav": str(wav), "text": text,
                        "audio_seconds": len(samples) / SAMPLE_RATE, "seconds": seconds})
        detail(f"tinyasr: {wav}: {len(samples) / SAMPLE_RATE:.2f} s of audio in "
               f"{seconds:.2f} s")
    if args.json:
        import json

        from tinyasr.model.common.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps({"model": str(source), "results": results},
                                                indent=2) + "\n")
    return 0


STDIN = "-"


def _holds_whisper(deployable: Path) -> bool:
    """A Whisper deployable (greedy decoding, model/whisper's search around the library)."""
    from tinyasr.compile.family import WHISPER, deployable_family

    return deployable_family(deployable) == WHISPER


def read_stdin_wav():
    """The one wav on stdin, checked as a wav file is; errors name it `-`."""
    import tempfile

    from tinyasr.model.common.atomic import scratch_prefix
    from tinyasr.model.data.datadir import load_wav

    data = sys.stdin.buffer.read()
    if not data:
        raise InputError(f"{STDIN}: no wav on stdin")
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("tinyasr-stdin-")) as tmp:
        path = Path(tmp) / "stdin.wav"   # the wav reader seeks, which a pipe cannot
        path.write_bytes(data)
        try:
            return load_wav(path)
        except InputError as error:
            raise InputError(str(error).replace(str(path), STDIN)) from None


def split_model_and_wavs(inputs: list[Path]) -> tuple[Path, list[Path]]:
    """`MODEL WAV...` or just `WAV...`: a leading directory, .tac file or model name is the
    model."""
    from tinyasr.model.decoding.recognizers import is_model_name
    from tinyasr.model.network.compressed import SUFFIX as COMPRESSED_SUFFIX

    if inputs[0].is_dir() or inputs[0].suffix == COMPRESSED_SUFFIX or is_model_name(inputs[0]):
        if len(inputs) == 1:
            raise InputError(f"{inputs[0]}: no wav files given after the model")
        return inputs[0], inputs[1:]
    return DEFAULT_MODEL, inputs
