"""Where block sparsity starts to pay, per instruction set: the BSR kernels against the dense
int8 and fp32 kernels of the same layer, at a range of densities, on this machine.

    python -m tinyasr.schedules.bench.sparsity --out DIR [--targets host,x86-64-v3]

For each target (x86 ones run here; a board's timings under qemu would say nothing) and each
of the SAN-M feed-forward shapes (144 -> 576, 576 -> 144) at a 5 s utterance's rows (the
kernel search's KERNEL_ROWS, 128): the dense int8 kernel of the target's dot ISA (default
register tile), the dense fp32 kernel, and the int8 and fp32 BSR kernels (4x1 blocks, the
pruner's default) at each density, blocks kept at random. Median of `repeat` runs of `number`
calls each. The crossover is the highest measured density at which the int8 BSR kernel is still
faster than the dense int8 kernel (compile/passes/bsr_matmul.py max_density). Writes
sparsity.json, sparsity.md, sparsity.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import tirx
from tvm.target import Target

from tinyasr.compile.kernels.bsr import bsr_matmul_kernel
from tinyasr.compile.kernels.fp32 import fp32_matmul_kernel, vector_unit
from tinyasr.compile.kernels.int8 import dot_isa, int8_matmul_kernel
from tinyasr.compile.schedule_database import static_workload
from tinyasr.model.common.atomic import atomic_write_text
from tinyasr.model.network.compressed import to_bsr
from tinyasr.model.network.sparsity import BlockShape
from tinyasr.schedules.bench.cpu import cpu_name
from tinyasr.schedules.kernel_search import KERNEL_ROWS
from tinyasr.targets.boards import board_target, get_board

SHAPES = ((576, 144), (144, 576))            # (n, k): the FFN's two layers
DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
BLOCK = (4, 1)


def _workload(function: tirx.PrimFunc) -> tvm.IRModule:
    """`function` with its symbolic rows bound to KERNEL_ROWS, as the kernel search times it."""
    workload = static_workload(function, lambda _name: KERNEL_ROWS)
    assert workload is not None, "a kernel's only symbolic size is its rows"
    return workload


def _arrays(workload: tvm.IRModule, given: dict[str, np.ndarray], rng: np.random.Generator
            ) -> list[np.ndarray]:
    """An array per buffer parameter of the workload: `given` by name, others random of the
    buffer's shape and dtype."""
    arrays = []
    # a parameter is a Var typed by its buffer (reflected from C++, not declared in Python)
    for param in workload["main"].params:  # pyright: ignore[reportAttributeAccessIssue]
        if param.name in given:
            arrays.append(given[param.name])
            continue
        shape, dtype = [int(d) for d in param.ty.shape], str(param.ty.dtype)
        if dtype == "int8":
            arrays.append(rng.integers(-127, 128, shape).astype(np.int8))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def time_kernel(function: tirx.PrimFunc, given: dict[str, np.ndarray], rng: np.random.Generator,
                target: Target, number: int, repeat: int) -> float:
    """Median ms of one call of `function` at KERNEL_ROWS rows on `given` and random inputs."""
    workload = _workload(function)
    library = tvm.compile(workload, target)
    device = tvm.cpu()
    tensors = [tvm.runtime.tensor(a, device) for a in _arrays(workload, given, rng)]
    timer = library.jit().time_evaluator("main", device, number=number, repeat=repeat)
    return statistics.median(timer(*tensors).results) * 1e3


def measure_target(name: str, number: int, repeat: int) -> dict[str, Any]:
    target = Target(board_target(get_board(name)))
    isa, unit = dot_isa(target), vector_unit(target)
    rng = np.random.default_rng(0)
    shapes = []
    for n, k in SHAPES:
        dense_int8 = int8_matmul_kernel(isa, n, k)
        dense_fp32 = fp32_matmul_kernel(unit, n, k)
        row: dict[str, Any] = {
            "n": n, "k": k,
            "dense_int8_ms": time_kernel(dense_int8, {}, rng, target, number, repeat),
            "dense_fp32_ms": time_kernel(dense_fp32, {}, rng, target, number, repeat),
            "bsr": []}
        for density in DENSITIES:
            keep = rng.random((n // BLOCK[0], k // BLOCK[1])) < density
            keep[0, 0] = True                       # at least one block
            weight = np.kron(keep, np.ones(BLOCK)) * rng.standard_normal((n, k))
            point: dict[str, Any] = {"density": float(keep.mean())}
            for int8 in (True, False):
                values = (np.clip(np.round(weight), -127, 127).astype(np.int8) if int8
                          else weight.astype(np.float32))
                bsr = to_bsr(values, BlockShape(*BLOCK))
                data, indices = bsr["values"], bsr["col_indices"]
                kernel = bsr_matmul_kernel(n, k, BLOCK, len(data), str(indices.dtype), int8)
                given = {"data": data, "indices": indices, "indptr": bsr["row_pointers"]}
                point["int8_ms" if int8 else "fp32_ms"] = time_kernel(
                    kernel, given, rng, target, number, repeat)
            row["bsr"].append(point)
        faster = [p["density"] for p in row["bsr"] if p["int8_ms"] < row["dense_int8_ms"]]
        row["int8_crossover_density"] = max(faster) if faster else None
        shapes.append(row)
    return {"target": name, "dot_isa": isa.name, "fp32_lanes": unit.lanes, "shapes": shapes}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"CPU: {report['cpu']}; {KERNEL_ROWS} rows, BSR blocks {BLOCK[0]}x{BLOCK[1]}, "
             f"median of {report['repeat']} x {report['number']} calls, ms.", ""]
    for target in report["targets"]:
        for shape in target["shapes"]:
            crossover = shape["int8_crossover_density"]
            wins = (f"up to density {crossover:.2f}" if crossover is not None
                    else f"at no density measured (down to {DENSITIES[0]})")
            lines += [f"**{target['target']}** ({target['dot_isa']}), {shape['k']} -> "
                      f"{shape['n']}: dense int8 {shape['dense_int8_ms']:.3f}, dense fp32 "
                      f"{shape['dense_fp32_ms']:.3f}; the int8 BSR kernel beats the dense int8 "
                      f"one {wins}", "",
                      "| density | BSR int8 | BSR fp32 |", "|---:|---:|---:|"]
            lines += [f"| {p['density']:.2f} | {p['int8_ms']:.3f} | {p['fp32_ms']:.3f} |"
                      for p in shape["bsr"]]
            lines.append("")
    return "\n".join(lines)


def write_plot(report: dict[str, Any], path: Path) -> None:
    from tinyasr.model.compression.report import agg_pyplot, save_png

    panels = [(t, s) for t in report["targets"] for s in t["shapes"]]
    figure, axes = agg_pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 4),
                                         squeeze=False)
    for axis, (target, shape) in zip(axes[0], panels, strict=True):
        densities = [p["density"] for p in shape["bsr"]]
        axis.plot(densities, [p["int8_ms"] for p in shape["bsr"]], marker="o", label="BSR int8")
        axis.plot(densities, [p["fp32_ms"] for p in shape["bsr"]], marker="s", label="BSR fp32")
        axis.axhline(shape["dense_int8_ms"], color="C2", linestyle="--", label="dense int8")
        axis.axhline(shape["dense_fp32_ms"], color="C3", linestyle=":", label="dense fp32")
        axis.set_title(f"{target['target']} ({target['dot_isa']}) {shape['k']}->{shape['n']}")
        axis.set_xlabel("density (kept blocks)")
        axis.set_ylabel("ms")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    save_png(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--targets", default="host,x86-64-v3")
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    report = {"cpu": cpu_name(), "number": args.number, "repeat": args.repeat,
              "targets": [measure_target(name, args.number, args.repeat)
                          for name in args.targets.split(",")]}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "sparsity.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out / "sparsity.md", markdown(report))
    write_plot(report, args.out / "sparsity.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
