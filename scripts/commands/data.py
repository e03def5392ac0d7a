"""`tinyasr data synth|check`: make a TTS corpus, or validate a Kaldi-style data dir."""

from __future__ import annotations

import argparse
import os
import wave
from collections import Counter
from pathlib import Path

from tinyasr.model.datadir import SAMPLE_RATE, read_data_dir
from tinyasr.model.errors import InputError
from tinyasr.scripts.synth import SPLITS, synthesize_corpus


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="make or check labelled speech data")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    synth = actions.add_parser("synth", help="synthesize a train/dev/test corpus split by voice")
    synth.add_argument("out", type=Path, help="output directory (must not exist unless --force)")
    synth.add_argument("--train", type=int, default=4000, help="train utterances (default 4000)")
    synth.add_argument("--dev", type=int, default=200, help="dev utterances (default 200)")
    synth.add_argument("--test", type=int, default=200, help="test utterances (default 200)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed and sizes give the same corpus")
    synth.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPU count)")
    synth.add_argument("--force", action="store_true", help="replace OUT once the new corpus is complete")
    synth.set_defaults(func=run_synth)

    check = actions.add_parser("check", help="validate a data dir and print its statistics")
    check.add_argument("dir", type=Path, help="data dir with wav.scp, text and optionally utt2spk")
    check.set_defaults(func=run_check)


def _require_at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise InputError(f"--{name}: must be at least {minimum}, got {value}")


def run_synth(args: argparse.Namespace) -> int:
    sizes = {split: getattr(args, split) for split in SPLITS}
    for split in SPLITS:
        _require_at_least(split, sizes[split], 0)
    _require_at_least("jobs", args.jobs, 1)
    seconds = synthesize_corpus(args.out, sizes, args.seed, args.jobs, args.force)
    for split in SPLITS:
        print(f"{split}: {sizes[split]} utterances, {seconds[split] / 3600:.2f} h -> {args.out / split}")
    return 0


def describe(data_dir: Path) -> str:
    """One line of statistics for a valid data dir: utterances, hours, mean length, speakers."""
    utterances = read_data_dir(data_dir)
    frames = 0
    for utterance in utterances:
        with wave.open(str(utterance.wav), "rb") as reader:
            frames += reader.getnframes()
    seconds = frames / SAMPLE_RATE
    speakers = Counter(utterance.speaker for utterance in utterances if utterance.speaker is not None)
    mean = seconds / len(utterances) if utterances else 0.0
    return (f"{data_dir}: {len(utterances)} utterances, {seconds / 3600:.2f} h, "
            f"mean {mean:.2f} s, {len(speakers)} speakers")


def run_check(args: argparse.Namespace) -> int:
    print(describe(args.dir))
    return 0
