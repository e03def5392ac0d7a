"""The report written out: bench.json, bench.md (the tables) and bench.png (the chart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tinyasr.model.common.atomic import atomic_write_text
from tinyasr.schedules.bench.harness import PROFILE_RUNS


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction:.1%}"


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lengths = report["lengths"]
    lines = [f"Host: {machine['cpu']} ({machine['arch']}), {report['threads']} thread(s); core "
             f"peak: {machine['peak_formula']}. Median over {report['rounds']} rounds (every "
             f"row in turn, each in a fresh process) of the median of {report['repeats']} "
             f"runs after a warm-up; reference utterance: "
             f"{report['reference_audio_seconds']:.2f} s of the bundled samples; decoding: "
             f"{report['decoding']['mode']} (beam {report['decoding']['beam']}); pipeline = "
             f"encoder, CTC search and the rescoring of the row's own n-best; rescoring = of "
             f"the same n-best in every row (the fp32 PyTorch model's for the reference "
             f"utterance: {report['rescoring']['hypotheses']} hypotheses, a prefix tree of "
             f"{report['rescoring']['tree_nodes']} nodes). Speedup = the fastest peer's "
             f"(PyTorch or ONNX Runtime row's) time in that column over the row's; the "
             f"fastest peer encoder: {report['best_peer']}.",
             "",
             "| row | encoder ms | rescoring ms | pipeline ms | RTF | speedup encoder / "
             "rescoring / pipeline | peak RSS MiB | artifact bytes | GFLOP/s | of peak |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        if r["skipped"]:
            lines.append(f"| {r['name']} | skipped: {r['skipped']} |" + " |" * 9)
            continue
        lines.append(
            f"| {r['name']} | {r['encoder_ms']:.1f} | {r['rescoring_ms']:.2f} | "
            f"{r['pipeline_ms']:.1f} | {r['rtf']:.4f} | "
            f"{r['encoder_speedup_vs_best_peer']:.2f}x / "
            f"{r['rescoring_speedup_vs_best_peer']:.2f}x / "
            f"{r['pipeline_speedup_vs_best_peer']:.2f}x | {r['peak_rss_bytes'] / 2**20:.0f} | "
            f"{r['artifact_bytes']:,} | {r['gflops']:.1f} | {_percent(r['peak_fraction'])} |")
    lines += ["", "Scaling: encoder / pipeline ms by audio length.", "",
              "| row | " + " | ".join(f"{s:g} s" for s in lengths) + " |",
              "|---|" + "---:|" * len(lengths)]
    for r in report["rows"]:
        if not r["skipped"]:
            cells = [f"{p['encoder_ms']:.1f} / {p['pipeline_ms']:.1f}" for p in r["scaling"]]
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += ["", f"FLOPs: {report['flops_counted_by']}; GFLOP/s = those FLOPs / encoder time "
                  "(int8 rows too, against the fp32 peak). Peak RSS: the row's own process "
                  "(Python, PyTorch, the runtime and the model). Artifact bytes: model dir "
                  "(PyTorch fp32), saved state dict (PyTorch int8), .onnx files, or the "
                  "deployable's library + weights.", ""]
    lines += [f"- {r['name']}: {r['note'] or r['skipped']}" for r in report["rows"]]
    return "\n".join(lines + top_kernels_markdown(report)) + "\n"


def top_kernels_markdown(report: dict[str, Any]) -> list[str]:
    """Per measured TVM row, its slowest compiled kernels: of the encoder, then of the
    rescoring."""
    lines = ["", f"Top kernels (encoder, {report['reference_seconds']:g} s), TVM rows: every "
             f"VM call of {PROFILE_RUNS} encodes of the reference utterance timed, after the "
             "timed runs; ms and calls per encode; share = of the time of all instrumented "
             "calls, the VM builtins (allocation, shapes) included."]
    lines += _kernel_tables(report, "top_kernels", "vm_builtins_ms")
    lines += ["", f"Top kernels (rescoring, {report['reference_seconds']:g} s), TVM rows: the "
              f"same, over {PROFILE_RUNS} decoder runs on the reference n-best's prefix tree "
              f"({report['rescoring']['tree_nodes']} nodes); ms and calls per run."]
    return lines + _kernel_tables(report, "rescoring_top_kernels", "rescoring_vm_builtins_ms")


def _kernel_tables(report: dict[str, Any], kernels: str, builtins: str) -> list[str]:
    lines = []
    for r in report["rows"]:
        if r[kernels]:
            lines += ["", f"{r['name']}: VM builtins {r[builtins]:.3f} ms.", "",
                      "| kernel | ms | share | calls |", "|---|---:|---:|---:|"]
            lines += [f"| {k['kernel']} | {k['ms']:.3f} | {k['share']:.1%} | {k['calls']} |"
                      for k in r[kernels]]
    return lines


PLOT_MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*"]
PLOT_DASHES = ["-", "--", "-.", ":"]


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Bars: encoder, rescoring and pipeline time of the reference utterance per row; lines:
    encoder time against audio length."""
    from tinyasr.model.compression.report import agg_pyplot, save_png

    rows = [r for r in report["rows"] if not r["skipped"]]
    figure, (bars, lines) = agg_pyplot().subplots(1, 2, figsize=(12, 4.5))
    positions = np.arange(len(rows))
    for offset, key, label in ((-0.27, "encoder_ms", "encoder"),
                               (0.0, "rescoring_ms", "rescoring (same n-best)"),
                               (0.27, "pipeline_ms", "pipeline")):
        bars.barh(positions + offset, [r[key] for r in rows], height=0.27, label=label)
    bars.set_yticks(positions, [r["name"] for r in rows], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel(f"latency (ms) for {report['reference_audio_seconds']:.1f} s of audio")
    threads = report["threads"]
    bars.set_title(f"latency, {threads} thread{'s' if threads != 1 else ''}")
    bars.legend(loc="lower right", fontsize=8)
    # Rows whose lines coincide (int8 and sparse int8) stay apart by marker and dash.
    for number, r in enumerate(rows):
        lines.plot([p["seconds"] for p in r["scaling"]], [p["encoder_ms"] for p in r["scaling"]],
                   marker=PLOT_MARKERS[number % len(PLOT_MARKERS)],
                   linestyle=PLOT_DASHES[number % len(PLOT_DASHES)], label=r["name"])
    lines.set_yscale("log")
    lines.set_xlabel("audio length (s)")
    lines.set_ylabel("encoder latency (ms, log scale)")
    lines.set_title("encoder latency against audio length")
    lines.grid(True, which="both", alpha=0.3)
    lines.legend(fontsize=7)
    figure.tight_layout()
    save_png(figure, path)


def write_outputs(report: dict[str, Any], out: Path) -> None:
    """bench.json, bench.md and bench.png in `out`, each written atomically."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "bench.md", markdown(report))
    write_plot(report, out / "bench.png")
