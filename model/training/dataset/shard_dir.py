"""A data dir packed into a shard dir (`tinyasr data shard`), written whole or not at all."""

from __future__ import annotations

from pathlib import Path

from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.data.synth import building, check_destination, check_not_inside
from tinyasr.model.training.dataset.sources import write_shards


def write_shard_dir(source: Path, out: Path, per_shard: int, seed: int = 0,
                    force: bool = False) -> tuple[int, int]:
    """The data dir `source` packed into a new shard dir `out` (write_shards), built beside it
    and renamed into place; an existing `out` only with `force`. Returns (utterances, shards)."""
    check_destination(out, force)
    check_not_inside(source, out)
    utterances = read_data_dir(source)
    with building(out) as build:
        count = write_shards(utterances, build, per_shard, seed)
    return len(utterances), count
