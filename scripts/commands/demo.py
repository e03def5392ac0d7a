"""`tinyasr demo`: the shipped model transcribes the bundled held-out-voice utterances."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL, SAMPLES_DIR


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="transcribe the bundled utterances; print CER "
                                                "and timing")
    parser.add_argument("--model", type=Path, default=COMPRESSED_MODEL,
                        help="model directory or compressed .tac file (default: the shipped "
                             "int8 model)")
    parser.add_argument("--data", type=Path, default=SAMPLES_DIR, help="Kaldi data dir")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tinyasr.model.data.datadir import read_data_dir
    from tinyasr.model.decoding.evaluate import evaluate
    from tinyasr.model.decoding.recognizer import Recognizer
    from tinyasr.model.network.model_dir import model_bytes

    torch.set_num_threads(1)
    recognizer = Recognizer.load(args.model)
    utterances = read_data_dir(args.data)
    parameters = sum(p.numel() for p in recognizer.model.parameters())
    print(f"model {args.model}: {parameters / 1e6:.2f} M parameters, "
          f"{model_bytes(args.model) / 1e6:.2f} MB on disk")
    result = evaluate(recognizer, utterances)
    for utterance in utterances:
        print(f"{utterance.uid}\n  ref: {utterance.text}\n"
              f"  hyp: {result.hypotheses[utterance.uid]}")
    print(f"CER {result.cer.summary()}")
    print(f"WER {result.wer.summary()}")
    print(f"{len(utterances)} utterances, {result.audio_seconds:.1f} s of audio decoded in "
          f"{result.decode_seconds:.2f} s on 1 thread (real-time factor "
          f"{result.real_time_factor:.3f}, attention rescoring)")
    return 0
