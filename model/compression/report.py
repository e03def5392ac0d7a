"""The paper's table: size and accuracy per compression stage, as Markdown, JSON and a PNG plot.

Every number is measured, none typed in: each stage is a compressed model file (a model dir is
first packed to fp32, as BSR where it was pruned), its bytes are that file's size, its parameter
counts come from the weights the reference runner loads from it, and its CER from decoding the
dev and test sets with that runner. The ratio is the first stage's bytes over each stage's.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyasr.model.common.atomic import atomic_file, atomic_write_text
from tinyasr.model.common.errors import InputError
from tinyasr.model.compression.prune import FIRST_CONV, pruned_block
from tinyasr.model.data.datadir import Utterance, read_data_dir
from tinyasr.model.decoding.evaluate import evaluate
from tinyasr.model.decoding.metrics import ErrorCounts
from tinyasr.model.decoding.options import DecodeOptions
from tinyasr.model.decoding.recognizer import Recognizer
from tinyasr.model.network.compressed import (
    SUFFIX,
    load_compressed,
    read_compressed,
    size_breakdown,
    write_compressed,
)
from tinyasr.model.network.model_dir import load_model_dir


@dataclass
class StageResult:
    name: str
    file: str
    bytes: int
    breakdown: dict[str, int]
    fp32_leftovers: dict[str, int]
    params: int
    nonzero_params: int
    ratio: float
    dev: ErrorCounts
    test: ErrorCounts
    seconds: float

    def to_dict(self) -> dict:
        values = asdict(self)
        for split in ("dev", "test"):
            values[split] = {**values[split], "cer": getattr(self, split).rate}
        return values


def fp32_leftovers(header: dict) -> dict[str, int]:
    """Bytes of the tensors an int8 file keeps in fp32, by what they are."""
    groups: dict[str, int] = {}
    for name, entry in header["tensors"].items():
        if entry["encoding"] != "float32":
            continue
        if name.startswith("cmvn."):
            group = "CMVN"
        elif name.startswith(FIRST_CONV + "."):
            group = "first conv"
        elif ".norm" in name:
            group = "LayerNorms"
        elif name.endswith(".bias"):
            group = "biases"
        else:
            group = name
        groups[group] = groups.get(group, 0) + sum(p["nbytes"] for p in entry["parts"].values())
    return groups


def parse_stage(text: str) -> tuple[str, Path]:
    """'NAME=PATH' -> (NAME, PATH)."""
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise InputError(f"stage {text!r}: expected NAME=PATH (a model dir or a {SUFFIX} file)")
    return name, Path(path)


def stage_file(name: str, source: Path, out_dir: Path) -> Path:
    """The compressed file of a stage: `source` itself, or a model dir packed into `out_dir`."""
    if source.is_file():
        return source
    model, tokenizer = load_model_dir(source)
    packed = out_dir / (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() + SUFFIX)
    write_compressed(packed, model, tokenizer, pruned_block(source))
    return packed


def measure(name: str, file: Path, dev: Sequence[Utterance], test: Sequence[Utterance],
            options: DecodeOptions) -> StageResult:
    started = time.perf_counter()
    model, tokenizer = load_compressed(file)
    recognizer = Recognizer(model, tokenizer, options)
    parameters = list(model.parameters())
    compressed = read_compressed(file)
    return StageResult(
        name=name, file=str(file), bytes=file.stat().st_size,
        breakdown=size_breakdown(compressed), fp32_leftovers=fp32_leftovers(compressed.header),
        params=sum(p.numel() for p in parameters),
        nonzero_params=sum(int((p != 0).sum()) for p in parameters), ratio=1.0,
        dev=evaluate(recognizer, dev).cer, test=evaluate(recognizer, test).cer,
        seconds=time.perf_counter() - started)


def sample(utterances: list[Utterance], limit: int | None) -> list[Utterance]:
    """The same seeded subset for every stage (all when `limit` is None)."""
    if limit is None or limit >= len(utterances):
        return utterances
    return random.Random(0).sample(utterances, limit)


def markdown(results: Sequence[StageResult], options: DecodeOptions, dev_count: int,
             test_count: int) -> str:
    def cer(counts: ErrorCounts) -> str:
        return (f"{counts.rate:.2f} | {counts.substitutions}/{counts.deletions}/"
                f"{counts.insertions}")

    base = results[0]
    lines = [f"Decoding: {options.mode.value} (beam {options.beam}); dev {dev_count}, test "
             f"{test_count} utterances; CER in %, S/D/I = substitutions/deletions/insertions.",
             "",
             "| stage | params | nonzero | bytes | ratio | dev CER | dev S/D/I | test CER | "
             "test S/D/I | test Δ |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {r.params:,} | {r.nonzero_params:,} | {r.bytes:,} | "
                     f"{r.ratio:.1f}x | {cer(r.dev)} | {cer(r.test)} | "
                     f"{r.test.rate - base.test.rate:+.2f} |")
    lines += ["", "Bytes by kind (header = prefix + JSON header + alignment):", "",
              "| stage | " + " | ".join(base.breakdown) + " |",
              "|---|" + "---:|" * len(base.breakdown)]
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(f"{v:,}" for v in r.breakdown.values()) + " |")
    for r in results:
        if r.breakdown["int8 values"]:
            kept = ", ".join(f"{group} {size:,}" for group, size in r.fp32_leftovers.items())
            lines += ["", f"{r.name}: fp32 kept ({sum(r.fp32_leftovers.values()):,} bytes, "
                          f"{sum(r.fp32_leftovers.values()) / r.bytes:.1%} of the file): {kept}"]
    return "\n".join(lines) + "\n"


def agg_pyplot():
    """matplotlib's pyplot on the Agg backend: draws to files, needs no display."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def save_png(figure, path: Path) -> None:
    """Writes a figure as PNG atomically and frees it."""
    with atomic_file(path) as handle:
        figure.savefig(handle, format="png", dpi=120)
    agg_pyplot().close(figure)


def write_plot(results: Sequence[StageResult], path: Path) -> None:
    """One row per stage, largest file at the top, named on the axis with its size and
    compression ratio; its dev and test CER on that row (square, circle), joined, so no point
    needs a label of its own and none can sit under another stage's."""
    rows = sorted(results, key=lambda r: r.bytes)
    figure, axes = agg_pyplot().subplots(figsize=(8, 1.4 + 0.45 * len(rows)))
    positions = range(len(rows))
    for y, r in zip(positions, rows, strict=True):
        axes.plot([r.dev.rate, r.test.rate], [y, y], color="0.75", linewidth=2, zorder=1)
    for split, marker, color in (("dev", "s", "tab:blue"), ("test", "o", "tab:orange")):
        axes.scatter([getattr(r, split).rate for r in rows], list(positions), marker=marker,
                     color=color, label=f"{split} CER", zorder=2)
    axes.set_yticks(list(positions), [f"{r.name}  ({r.bytes / 1e3:,.0f} KB, {r.ratio:.1f}x)"
                                      for r in rows], fontsize=8)
    axes.set_ylim(-0.6, len(rows) - 0.4)
    axes.set_xlabel("character error rate, CER (%)")
    axes.set_ylabel("stage (model file size, compression ratio)")
    axes.set_title("tinyasr compression: CER per stage (smaller files lower)")
    axes.grid(True, axis="x", alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    save_png(figure, path)


def make_report(stages: Sequence[tuple[str, Path]], data: Path, out_dir: Path,
                options: DecodeOptions, max_utterances: int | None = None) -> list[StageResult]:
    """Measures every stage and writes report.md, report.json and report.png into `out_dir`."""
    if not stages:
        raise InputError("report: give at least one stage NAME=PATH")
    dev = sample(read_data_dir(data / "dev"), max_utterances)
    test = sample(read_data_dir(data / "test"), max_utterances)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name, source in stages:
        results.append(measure(name, stage_file(name, source, out_dir), dev, test, options))
        results[-1].ratio = results[0].bytes / results[-1].bytes
        print(f"{name}: {results[-1].bytes:,} bytes, {results[-1].ratio:.1f}x, "
              f"dev CER {results[-1].dev.rate:.2f}%, test CER {results[-1].test.rate:.2f}% "
              f"({results[-1].seconds:.0f} s)")
    atomic_write_text(out_dir / "report.md", markdown(results, options, len(dev), len(test)))
    atomic_write_text(out_dir / "report.json", json.dumps(
        {"decoding": {"mode": options.mode.value, "beam": options.beam},
         "dev_utterances": len(dev), "test_utterances": len(test),
         "stages": [r.to_dict() for r in results]}, indent=2) + "\n")
    write_plot(results, out_dir / "report.png")
    return results
