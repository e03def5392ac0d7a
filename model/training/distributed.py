"""Data-parallel training across processes: the env contract, collectives, and a local launcher.

A training process learns its place from torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT. Without WORLD_SIZE it is the only process and no process group is
made. `launch` starts N such processes on this machine with the same environment (what
`torchrun --standalone --nproc-per-node N` does) for `tinyasr train --nproc N`; on a cluster,
torchrun itself starts `tinyasr train` on every node.

The process group uses gloo on CPU and NCCL on CUDA, with a timeout (TINYASR_DIST_TIMEOUT
seconds, default 300): a rank whose peer died stops at its next collective instead of waiting
for ever. Under `launch`, the launcher also ends every rank as soon as one exits with an error,
and each rank dies with the launcher (a kill -9 of `tinyasr train` leaves no orphans).
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tinyasr.model.common.errors import InputError

TIMEOUT_ENV = "TINYASR_DIST_TIMEOUT"
MMAP_THRESHOLD_ENV = "TINYASR_MMAP_THRESHOLD"   # bytes; see fix_mmap_threshold
DEFAULT_MMAP_THRESHOLD = 128 * 1024
DEFAULT_TIMEOUT = 300.0
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(name: str, nproc: int) -> str:
    """'cpu' or 'cuda' for `--device`; InputError when the machine cannot do it."""
    if name not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device: expected auto, cpu or cuda, not {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU is visible to PyTorch on this machine")
        if nproc > torch.cuda.device_count():
            raise InputError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} "
                             "CUDA GPU(s); run at most one process per GPU")
    elif nproc > usable_cores():
        raise InputError(f"--nproc {nproc}: this machine has {usable_cores()} usable CPU cores; "
                         "run at most one process per core")
    return name


def check_precision(precision: str, device: str) -> torch.dtype | None:
    """The autocast dtype for `--precision` (None: fp32); InputError when the device lacks it."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision: expected fp32, bf16 or fp16, not {precision!r}")
    if precision == "fp16" and device != "cuda":
        raise InputError("--precision fp16: needs a CUDA device (fp16 autocast with loss scaling "
                         "is a GPU mode); use bf16 or fp32 on CPU")
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("--precision bf16: this GPU has no bf16 support; use fp16 or fp32")
    return PRECISIONS[precision]


def env_number(name: str, kind: type, default: float, unit: str, positive: bool) -> float:
    """The number in environment variable `name` (`default` when unset or empty), parsed as
    `kind`; InputError naming it when it does not parse or is negative (or zero, if
    `positive`)."""
    value = os.environ.get(name, "")
    try:
        number = kind(value) if value else default
    except ValueError:
        raise InputError(f"{name}: expected {unit}, not {value!r}") from None
    if number < 0 or (positive and number == 0):
        bound = f"positive {unit}" if positive else f"{unit} >= 0"
        raise InputError(f"{name}: expected {bound}, not {value!r}")
    return number


def mmap_threshold() -> int:
    """The threshold for fix_mmap_threshold: MMAP_THRESHOLD_ENV's bytes, else 128 KiB."""
    return int(env_number(MMAP_THRESHOLD_ENV, int, DEFAULT_MMAP_THRESHOLD, "bytes",
                          positive=False))


def fix_mmap_threshold(limit: int) -> None:
    """Makes glibc return every freed allocation above `limit` bytes to the OS at once (0 keeps
    glibc's own rule).

    glibc raises its mmap threshold each time a large block is freed, after which batch-sized
    tensors are carved from the heap, whose free space fragments and is rarely given back: a
    training process's RSS then creeps up with every step even though nothing is kept. A fixed
    threshold stops the creep, and costs time: every large tensor is a fresh mmap whose pages
    the kernel zeroes. Measured with model/configs/shared.json, 1 process of 1 thread, on a
    2-core Intel Xeon (KVM), peak RSS after 0.3 h -> 3 h of audio (one epoch each) and speed:
    128 KiB 629 -> 657 MiB at 67-69 s of audio per second (a third of the time in the kernel);
    1 MiB 732 -> 946 MiB at 89-94 s/s; 4 MiB 784 -> 994 MiB at 93-96 s/s; glibc's rule
    985 -> 1591 MiB at 96-99 s/s. The default keeps memory flat; a machine with memory to spare
    trains ~1.4x faster with MMAP_THRESHOLD_ENV=0. A no-op where libc is not glibc."""
    if limit == 0:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, limit)      # M_MMAP_THRESHOLD; setting it turns the dynamic rule off
    except (OSError, AttributeError):
        pass


def timeout_seconds() -> float:
    return env_number(TIMEOUT_ENV, float, DEFAULT_TIMEOUT, "seconds", positive=True)


def init(device: str) -> Context:
    """This process's place, from the torchrun environment; joins the process group if there
    is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank,
                                world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_seconds()))
    return Context(rank, world, local_rank, where)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def sum_all(context: Context, values: list[float]) -> list[float]:
    """Elementwise sum of `values` over ranks (float64)."""
    if not context.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device(context))
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def all_true(context: Context, flag: bool) -> bool:
    if not context.distributed:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32,
                          device=_collective_device(context))
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item())


def is_lost_peer(error: BaseException) -> bool:
    """Whether a collective failed because another rank is gone (closed connection, timeout)."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return any(mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection reset",
                                         "Connection closed", "Timed out"))


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def _collective_device(context: Context) -> torch.device:
    return context.device   # NCCL needs CUDA tensors; gloo takes CPU ones


# -- the local launcher ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the launcher dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


ERROR_PREFIX = "tinyasr: error:"


def _forward(stream, held: list[str]) -> None:
    """A rank > 0's stderr to ours, line by line; its error lines are held back (rank 0 prints
    the same line when all ranks fail alike) and printed at the end only if rank 0 did not fail."""
    for line in iter(stream.readline, ""):
        if line.startswith(ERROR_PREFIX):
            held.append(line)
        else:
            sys.stderr.write(line)
            sys.stderr.flush()


SETTLE_SECONDS = 1.0   # how long the other ranks may take to exit on their own after a failure


def launch(command: list[str], nproc: int, grace: float = 5.0) -> int:
    """Runs `command` as ranks 0..nproc-1 of one process group on this machine; returns rank 0's
    exit code, or the first failing rank's. When one rank fails the others are ended (SIGTERM,
    then SIGKILL after `grace` seconds)."""
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
            "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc)}
    processes: list[subprocess.Popen] = []
    held: list[list[str]] = []
    threads = []
    for rank in range(nproc):
        env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
        quiet = rank > 0
        process = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent,
                                   stdout=subprocess.DEVNULL if quiet else None,
                                   stderr=subprocess.PIPE if quiet else None, text=True)
        processes.append(process)
        if quiet:
            held.append([])
            thread = threading.Thread(target=_forward, args=(process.stderr, held[-1]),
                                      daemon=True)
            thread.start()
            threads.append(thread)

    def stop_all(signum=None, frame=None) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.time() + grace
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    previous = {sig: signal.signal(sig, lambda s, f: (stop_all(), sys.exit(128 + s)))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed: int | None = None
        while True:
            # A rank that loses its peers exits 1 within moments of the one that failed: when
            # both are seen gone, the one a signal ended comes first (then the lowest rank).
            dead = [(process.returncode >= 0, rank) for rank, process in enumerate(processes)
                    if process.poll() not in (None, 0)]
            if dead:
                failed = min(dead)[1]
                break
            if all(process.poll() is not None for process in processes):
                break
            time.sleep(0.1)
        if failed is not None:
            # ranks failing alike (bad input) exit on their own: let them finish printing
            # before the others are stopped, so rank 0's one line is not cut off mid-exit
            settle = time.time() + SETTLE_SECONDS
            while time.time() < settle and any(p.poll() is None for p in processes):
                time.sleep(0.05)
            stop_all()
        for thread in threads:
            thread.join(timeout=grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [process.returncode for process in processes]
    if failed is None:
        return codes[0]
    if codes[0] != 2:
        lines = [line for rank_lines in held for line in rank_lines]
        if lines:
            sys.stderr.write(lines[0])
            return 2
        sys.stderr.write(f"{ERROR_PREFIX} training rank {failed} exited with code "
                         f"{codes[failed]}; the other ranks were stopped\n")
    code = codes[failed]
    return code if code > 0 else 128 - code     # a signal: 128 + its number, as shells say
