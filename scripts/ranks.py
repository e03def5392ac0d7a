"""Commands that train as data-parallel ranks (`tinyasr train`, and the fine-tunes of `tinyasr
compress prune|quantize`): their --nproc, --device, --precision and --threads, and the running
of the command as one rank, or as --nproc ranks on this machine (each rank runs the same command
line again, with the launcher's environment saying which rank it is, as under torchrun).

Light at import, as every command module is: torch is imported when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinyasr.model.common.errors import InputError

if TYPE_CHECKING:
    import torch

    from tinyasr.model.training.distributed import Context


def add_rank_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--nproc", type=int, default=1,
                        help=f"data-parallel {what} processes on this machine (default 1; at "
                             "most one per core, or per GPU with --device cuda)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto (default): cuda if a GPU is visible, else cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast precision (default fp32; fp16 needs cuda and uses loss "
                             "scaling)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per process (default: 2, or the cores shared out "
                             "over --nproc)")


@dataclass
class Ranks:
    """How this invocation runs: `launch` (start --nproc ranks of this command) or as a rank."""

    launch: bool
    nproc: int
    device: str
    precision: torch.dtype | None
    threads: int


def plan_ranks(args: argparse.Namespace) -> Ranks:
    """Checks the rank options (one line naming a bad one) and resolves the device."""
    from tinyasr.model.training import distributed

    if args.nproc < 1:
        raise InputError(f"--nproc must be at least 1, not {args.nproc}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, not {args.threads}")
    distributed.mmap_threshold()   # a bad value: one line here, before any rank starts
    launched = "WORLD_SIZE" in os.environ       # a rank of torchrun or of our launcher
    world = int(os.environ.get("LOCAL_WORLD_SIZE",
                               os.environ.get("WORLD_SIZE", str(args.nproc))))
    device = distributed.resolve_device(args.device, 1 if launched else args.nproc)
    precision = distributed.check_precision(args.precision, device)
    threads = args.threads or max(1, min(2, distributed.usable_cores() // max(world, 1)))
    return Ranks(args.nproc > 1 and not launched, args.nproc, device, precision, threads)


def launch_ranks(args: argparse.Namespace, ranks: Ranks) -> int:
    """Runs this command line as `ranks.nproc` ranks (each sees WORLD_SIZE and so runs as a
    rank, not as a launcher), with the threads per rank spelt out; returns their exit code."""
    from tinyasr.model.training import distributed

    argv = list(args.argv if getattr(args, "argv", None) is not None else sys.argv[1:])
    command = [sys.executable, "-m", "tinyasr.scripts.cli", *argv, "--threads",
               str(ranks.threads)]
    return distributed.launch(command, ranks.nproc)


def run_as_rank(ranks: Ranks, body: Callable[[Context], int]) -> int:
    """`body(context)` as this process's rank: threads and allocator set, the process group
    joined (and left, whatever happens). A rank that loses the others says so in one line and
    exits 1; one rank's bad input is the launcher's one line."""
    import torch

    from tinyasr.model.training import distributed

    mmap_threshold = distributed.mmap_threshold()
    torch.set_num_threads(ranks.threads)
    distributed.fix_mmap_threshold(mmap_threshold)
    context = distributed.init(ranks.device)
    try:
        return body(context)
    except RuntimeError as error:
        if not (context.distributed and distributed.is_lost_peer(error)):
            raise
        print(f"tinyasr: error: rank {context.rank}: lost the other ranks "
              f"({distributed.first_line(error)})", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
