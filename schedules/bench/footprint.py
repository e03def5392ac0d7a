"""What a model costs on each board: the bytes to copy there and the transcriber's peak memory.

Per board, the model compiled for it (`tinyasr compile --static`) and its runtime built
(`tinyasr board build-runtime`); files: `tinyasr-run-static` (the transcriber with the runtime
linked in), `model.so`, `weights.bin`; and the one program that replaces them,
`tinyasr-transcribe` (everything linked in). Peak RSS: VmHWM that each transcriber prints after
transcribing one utterance per length (the bundled samples concatenated and cut, as `tinyasr
bench` cuts them), run natively for a board of this machine's architecture (the host build of
the same code) and under qemu-user for the others, where the emulator's own memory is counted
too; both must print the same text. Written as footprint.json, footprint.md and footprint.png.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tinyasr.compile.deployable import LIBRARY_FILE, WEIGHTS_FILE, build_deployable
from tinyasr.model.common.atomic import atomic_write_text, scratch_prefix
from tinyasr.model.data.synth import write_wav
from tinyasr.model.decoding.options import DecodeMode
from tinyasr.schedules.bench.cpu import cpu_name
from tinyasr.schedules.bench.workload import bench_waveforms
from tinyasr.targets.boards import Board
from tinyasr.targets.farm import emulator_prefix
from tinyasr.targets.native_build import STATIC_TRANSCRIBER_NAME, build_runtime
from tinyasr.targets.static_transcriber import PROGRAM, static_linker

PEAK_RSS = re.compile(r"peak RSS ([\d.]+) MiB")
MIB = 1 << 20


def transcriber_peak_rss(board: Board, transcriber: Sequence[Path], wav: Path,
                         mode: DecodeMode) -> tuple[float, str]:
    """(peak RSS MiB, transcript) of a transcriber (the program, and the deployable it takes if
    any) on one wav, natively or emulated."""
    program, *deployable = map(str, transcriber)
    result = subprocess.run([*emulator_prefix(board), program, "--mode", mode.value,
                             *deployable, str(wav)], capture_output=True, text=True, check=False)
    found = PEAK_RSS.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{program} on {board.name} failed: {result.stderr.strip()}")
    return float(found.group(1)), result.stdout.strip()


def measure_board(board: Board, model: Path, wavs: dict[float, Path], work: Path,
                  mode: DecodeMode, progress: Callable[[str], None]) -> dict[str, Any]:
    """One board's row: its files' bytes and the peak RSS per length, and the same of the one
    program (`program_bytes`, `program_peak_rss`)."""
    deployable = work / board.name
    progress(f"footprint: {board.name}: compiling")
    build_deployable(model, board, deployable, static=static_linker(board))
    runtime = build_runtime(board, log=progress)
    files = {STATIC_TRANSCRIBER_NAME: runtime.static_transcriber.stat().st_size,
             LIBRARY_FILE: (deployable / LIBRARY_FILE).stat().st_size,
             WEIGHTS_FILE: (deployable / WEIGHTS_FILE).stat().st_size}
    rss, program_rss = [], []
    for seconds, wav in wavs.items():
        peak, text = transcriber_peak_rss(board, [runtime.static_transcriber, deployable], wav,
                                          mode)
        alone, same = transcriber_peak_rss(board, [deployable / PROGRAM], wav, mode)
        if same != text:
            raise RuntimeError(f"{PROGRAM} printed {same!r}, {STATIC_TRANSCRIBER_NAME} {text!r}")
        progress(f"footprint: {board.name}: {seconds:g} s: peak RSS {peak:.1f} MiB "
                 f"({PROGRAM}: {alone:.1f})")
        rss.append({"seconds": seconds, "peak_rss_mib": peak, "transcript": text})
        program_rss.append({"seconds": seconds, "peak_rss_mib": alone})
    return {"board": board.name, "arch": board.arch, "emulated": not board.is_host,
            "bytes": files, "total_bytes": sum(files.values()), "peak_rss": rss,
            "program_bytes": (deployable / PROGRAM).stat().st_size,
            "program_peak_rss": program_rss}


def measure_footprint(boards: Sequence[Board], model: Path, lengths: Sequence[float],
                      mode: DecodeMode, progress: Callable[[str], None]) -> dict[str, Any]:
    """The report: a row per board (measure_board), on utterances of `lengths` seconds."""
    with tempfile.TemporaryDirectory(prefix=scratch_prefix(".tinyasr-footprint-")) as temp:
        work = Path(temp)
        wavs = {}
        for seconds, samples in bench_waveforms(lengths).items():
            wavs[seconds] = work / f"{seconds:g}s.wav"
            write_wav(wavs[seconds], samples)
        rows = [measure_board(board, model, wavs, work, mode, progress) for board in boards]
    return {"machine": {"cpu": cpu_name()}, "model": str(model), "decoding": mode.value,
            "lengths": list(lengths), "boards": rows}


def markdown(report: dict[str, Any]) -> str:
    lengths = report["lengths"]
    lines = [f"Model {report['model']}; host CPU: {report['machine']['cpu']}; decoding "
             f"{report['decoding']}. Bytes: the files to copy to the board; peak RSS: VmHWM of "
             f"{STATIC_TRANSCRIBER_NAME} for one utterance (emulated rows: qemu-user's included).",
             "",
             f"| board | {STATIC_TRANSCRIBER_NAME} KiB | {LIBRARY_FILE} KiB | {WEIGHTS_FILE} KiB "
             "| total MB | " + " | ".join(f"peak RSS {s:g} s MiB" for s in lengths) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(lengths)]
    for row in report["boards"]:
        sizes = row["bytes"]
        name = row["board"] + (" (qemu)" if row["emulated"] else " (native)")
        lines.append(f"| {name} | {sizes[STATIC_TRANSCRIBER_NAME] / 1024:.0f} | "
                     f"{sizes[LIBRARY_FILE] / 1024:.0f} | {sizes[WEIGHTS_FILE] / 1024:.0f} | "
                     f"{row['total_bytes'] / 1e6:.2f} | "
                     + " | ".join(f"{point['peak_rss_mib']:.1f}" for point in row["peak_rss"])
                     + " |")
    lines += ["", f"One program instead (`tinyasr compile --static`: {PROGRAM}, the model's code "
              "and files linked in):", "",
              f"| board | {PROGRAM} KiB | total MB | against the files | "
              + " | ".join(f"peak RSS {s:g} s MiB" for s in lengths) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(lengths)]
    for row in report["boards"]:
        name = row["board"] + (" (qemu)" if row["emulated"] else " (native)")
        lines.append(f"| {name} | {row['program_bytes'] / 1024:.0f} | "
                     f"{row['program_bytes'] / 1e6:.2f} | "
                     f"{row['program_bytes'] - row['total_bytes']:+,d} B | "
                     + " | ".join(f"{point['peak_rss_mib']:.1f}"
                                  for point in row["program_peak_rss"]) + " |")
    return "\n".join(lines) + "\n"


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Bars: each board's bytes by file; lines: peak RSS against audio length."""
    from tinyasr.model.compression.report import agg_pyplot, save_png

    rows = report["boards"]
    figure, (bars, lines) = agg_pyplot().subplots(1, 2, figsize=(12, 4.5))
    names = [row["board"] for row in rows]
    left = [0.0] * len(rows)
    for file in (STATIC_TRANSCRIBER_NAME, LIBRARY_FILE, WEIGHTS_FILE):
        widths = [row["bytes"][file] / 1e6 for row in rows]
        bars.barh(names, widths, left=left, label=file)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    bars.invert_yaxis()
    bars.set_xlabel("MB to copy to the board")
    bars.set_title("disk footprint")
    bars.legend(fontsize=8)
    for row in rows:
        lines.plot([p["seconds"] for p in row["peak_rss"]],
                   [p["peak_rss_mib"] for p in row["peak_rss"]], marker="o",
                   label=row["board"] + (" (qemu)" if row["emulated"] else ""))
    lines.set_xlabel("audio length (s)")
    lines.set_ylabel("peak RSS (MiB)")
    lines.set_title(f"{STATIC_TRANSCRIBER_NAME} peak memory")
    lines.grid(True, alpha=0.3)
    lines.legend(fontsize=8)
    figure.tight_layout()
    save_png(figure, path)


def write_footprint(report: dict[str, Any], out: Path) -> None:
    """footprint.json, footprint.md and footprint.png in `out`, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "footprint.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "footprint.md", markdown(report))
    write_plot(report, out / "footprint.png")
