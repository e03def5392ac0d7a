"""`transcribe`: every wav of files.WAVS, paths that are not wav files, and its arguments."""

from __future__ import annotations

import os

from bad_inputs.corpus import Case, Corpus
from bad_inputs.files import WAV_OUTCOMES


def add_cases(c: Corpus) -> None:
    model, good = str(c.model_dir), c.good_wav
    for name, outcome in WAV_OUTCOMES.items():
        path = str(c.wavs / f"{name}.wav")
        c.add(f"transcribe-{name}", Case("transcribe", ("transcribe", model, path), outcome,
                                         None if outcome in (None, "") else path))
    fifo = c.root / "a-fifo.wav"
    os.mkfifo(fifo)
    for name, path, expect in [
            ("wav-is-a-directory", str(c.wavs), "wav file not found"),
            ("wav-missing", str(c.root / "nowhere.wav"), "wav file not found"),
            ("wav-is-a-fifo", str(fifo), "wav file not found"),   # never opened: no hang
            ("wav-is-dev-null", "/dev/null", "wav file not found"),
            ("wav-is-a-model", str(c.tac), "unreadable wav")]:
        c.add(f"transcribe-{name}", Case("transcribe", ("transcribe", model, path), expect, path))
    c.add("transcribe-second-wav-missing", Case(
        "transcribe", ("transcribe", model, good, str(c.root / "gone.wav")), "wav file not found",
        str(c.root / "gone.wav")))
    for beam in ("0", "-3", "x", "1.5", ""):
        c.add(f"transcribe-beam-{beam or 'empty'}", Case(
            "transcribe", ("transcribe", model, good, "--beam", beam), "--beam", "--beam"))
    c.add("transcribe-beam-huge", Case("transcribe", ("transcribe", model, good, "--beam",
                                                      "100000"), "at most", "--beam"))
    c.add("transcribe-beam-widest", Case("transcribe", ("transcribe", model, good, "--beam",
                                                        "100"), None))
    c.add("transcribe-mode-unknown", Case(
        "transcribe", ("transcribe", model, good, "--mode", "psychic"), "--mode", "--mode"))
    for mode in ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring"):
        c.add(f"transcribe-mode-{mode}-silence", Case(
            "transcribe", ("transcribe", model, str(c.wavs / "silence.wav"), "--mode", mode),
            None))
    c.add("transcribe-no-arguments", Case("transcribe", ("transcribe",), "required", "WAV"))
    c.add("transcribe-model-without-wavs", Case("transcribe", ("transcribe", model),
                                                "no wav files given", model))
    c.add("transcribe-stdin-twice", Case("transcribe", ("transcribe", model, "-", "-"),
                                         "given more than once", "-"))
    c.add("transcribe-model-empty-dir", Case(
        "transcribe", ("transcribe", str(c.dir("empty-model")), good),
        "not a model", str(c.root / "empty-model")))
    c.add("transcribe-tac-missing", Case(
        "transcribe", ("transcribe", str(c.root / "gone.tac"), good),
        "not a model", str(c.root / "gone.tac")))
    c.add("transcribe-model-option-missing", Case(
        "transcribe", ("transcribe", "--model", str(c.root / "gone"), good),
        "not a model", str(c.root / "gone")))
    c.add("transcribe-model-option-unknown-name", Case(
        "transcribe", ("transcribe", "--model", "whisper-huge", good),
        "not a model", "whisper-huge"))
    c.add("transcribe-lib-and-model", Case(
        "transcribe", ("transcribe", "--lib", str(c.root / "lib"), "--model", model, good),
        "--lib", "--model"))
    c.add("transcribe-json-is-a-directory", Case(
        "transcribe", ("transcribe", model, good, "--json", str(c.root)), "is a directory",
        "--json"))
    c.add("transcribe-json-under-a-file", Case(
        "transcribe", ("transcribe", model, good, "--json", f"{good}/x.json"), "--json",
        "--json"))
    c.add("transcribe-unknown-option", Case("transcribe", ("transcribe", good, "--fast"),
                                            "unrecognized arguments", "--fast"))
