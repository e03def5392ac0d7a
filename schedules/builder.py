"""MetaSchedule's local builder without a 35-CPU-second import in every batch.

TVM's default build function imports `tvm.s_tir.tensor_intrin` (every tensor intrinsic of every
target, parsed from TVMScript: 35 s of CPU, over 60 s on this loaded 2-core machine) inside each
worker, and LocalBuilder starts fresh workers for every batch of candidates; with the default
timeout every build timed out. Candidates arrive already scheduled (a tensorized block carries
its intrinsic's body), so building them needs none of those registrations.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import meta_schedule as ms


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params) -> tvm.runtime.Module:
    """What MetaSchedule's default_build does, minus the tensor intrinsic import."""
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def local_builder(timeout_sec: float) -> ms.builder.LocalBuilder:
    """LocalBuilder whose workers build with `build_candidate`."""
    return ms.builder.LocalBuilder(timeout_sec=timeout_sec, f_build=build_candidate)
