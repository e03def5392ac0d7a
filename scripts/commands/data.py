"""`tinyasr data synth|subset|check|shard|augment-preview`: make a TTS corpus, cut a small sample
of a data dir, validate one, pack one into tar shards for streamed training, listen to what the
training augmentation makes of it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tinyasr.model.common.errors import InputError
from tinyasr.scripts.arguments import positive_number

# The data and synthesis modules (numpy, tqdm) are imported where used: the parser is built on
# every start.


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="make or check labelled speech data")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    synth = actions.add_parser("synth", help="synthesize a train/dev/test corpus split by voice "
                                             "and sentence, plus test_unseen_engine (an engine "
                                             "train never hears)")
    synth.add_argument("out", type=Path, help="output directory (must not exist unless --force)")
    synth.add_argument("--train", type=int, default=4000, help="train utterances (default 4000)")
    synth.add_argument("--dev", type=int, default=200, help="dev utterances (default 200)")
    synth.add_argument("--test", type=int, default=200, help="test utterances (default 200)")
    synth.add_argument("--test-unseen-engine", type=int, default=None, metavar="N",
                       help="utterances of test_unseen_engine, the held-out engine's test split "
                            "(default: as many as --test)")
    synth.add_argument("--seed", type=int, default=0,
                       help="random seed; same seed and sizes give the same corpus")
    synth.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                       help="worker processes (default: CPU count)")
    synth.add_argument("--force", action="store_true",
                       help="replace OUT once the new corpus is complete")
    synth.set_defaults(func=run_synth)

    subset = actions.add_parser("subset", help="copy a few short utterances, spread over the "
                                               "speakers, to a new data dir")
    subset.add_argument("source", type=Path, help="data dir to pick from")
    subset.add_argument("out", type=Path, help="new data dir (its wavs go to OUT/wavs)")
    subset.add_argument("--count", type=int, default=12, help="utterances to copy (default 12)")
    subset.add_argument("--max-seconds", type=positive_number, default=3.0,
                        help="skip longer utterances (default 3.0)")
    subset.add_argument("--force", action="store_true", help="replace OUT if it exists")
    subset.set_defaults(func=run_subset)

    check = actions.add_parser("check", help="validate a data dir and print its statistics")
    check.add_argument("dir", type=Path, help="data dir with wav.scp, text and optionally utt2spk")
    check.set_defaults(func=run_check)

    shard = actions.add_parser("shard", help="pack a data dir into tar shards (WeNet layout) "
                                             "that `tinyasr train` streams")
    shard.add_argument("dir", type=Path, help="data dir with wav.scp, text and optionally utt2spk")
    shard.add_argument("out", type=Path, help="output dir: shard_NNNNNN.tar, shards.list, text")
    shard.add_argument("--per-shard", type=int, default=1000,
                       help="utterances per shard (default 1000)")
    shard.add_argument("--seed", type=int, default=0,
                       help="seed of the order utterances are packed in (default 0)")
    shard.add_argument("--force", action="store_true", help="replace OUT if it exists")
    shard.set_defaults(func=run_shard)

    preview = actions.add_parser("augment-preview",
                                 help="write augmented copies of a few utterances as wavs")
    preview.add_argument("dir", type=Path, help="data dir (or shard dir) to take utterances from")
    preview.add_argument("out", type=Path, help="output dir for the wavs")
    preview.add_argument("--count", type=int, default=8, help="utterances (default 8)")
    preview.add_argument("--config", type=Path,
                         help="recipe JSON whose \"augment\" section to apply (default: every "
                              "effect on, speeds 0.9/1.0/1.1)")
    preview.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    preview.add_argument("--epoch", type=int, default=0,
                         help="epoch whose draws to show (default 0)")
    preview.add_argument("--force", action="store_true", help="replace OUT if it exists")
    preview.set_defaults(func=run_augment_preview)


def _require_at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise InputError(f"--{name}: must be at least {minimum}, got {value}")


def run_synth(args: argparse.Namespace) -> int:
    from tinyasr.model.data.synth import SPLITS, synthesize_corpus

    if args.test_unseen_engine is None:
        args.test_unseen_engine = args.test
    sizes = {split: getattr(args, split) for split in SPLITS}
    for split in SPLITS:
        _require_at_least(split.replace("_", "-"), sizes[split], 0)
    _require_at_least("jobs", args.jobs, 1)
    seconds = synthesize_corpus(args.out, sizes, args.seed, args.jobs, args.force)
    for split in SPLITS:
        print(f"{split}: {sizes[split]} utterances, {seconds[split] / 3600:.2f} h "
              f"-> {args.out / split}")
    return 0


def run_subset(args: argparse.Namespace) -> int:
    from tinyasr.model.data.subset import write_subset

    _require_at_least("count", args.count, 1)
    write_subset(args.source, args.out, args.count, args.max_seconds, args.force)
    print(describe(args.out))
    return 0


def describe(data_dir: Path) -> str:
    """One line of statistics for a valid data dir: utterances, hours, mean length, speakers."""
    from tinyasr.model.data.subset import data_dir_stats

    stats = data_dir_stats(data_dir)
    return (f"{data_dir}: {stats.utterances} utterances, {stats.seconds / 3600:.2f} h, "
            f"mean {stats.mean_seconds:.2f} s, {stats.speakers} speakers")


def run_check(args: argparse.Namespace) -> int:
    print(describe(args.dir))
    return 0


def run_shard(args: argparse.Namespace) -> int:
    from tinyasr.model.training.dataset.shard_dir import write_shard_dir
    from tinyasr.model.training.dataset.sources import SHARD_LIST

    _require_at_least("per-shard", args.per_shard, 1)
    utterances, shards = write_shard_dir(args.dir, args.out, args.per_shard, args.seed,
                                         args.force)
    print(f"{args.out}: {utterances} utterances in {shards} shards ({args.out / SHARD_LIST})")
    return 0


def run_augment_preview(args: argparse.Namespace) -> int:
    from tinyasr.model.training.dataset.preview import EFFECTS_FILE, write_augment_preview

    _require_at_least("count", args.count, 1)
    _require_at_least("epoch", args.epoch, 0)
    count = write_augment_preview(args.dir, args.out, args.count, args.config, args.seed,
                                  args.epoch, args.force)
    print(f"{args.out}: {count} augmented wavs, their effects in {args.out / EFFECTS_FILE}")
    return 0
