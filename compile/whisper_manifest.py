"""What a Whisper deployable's manifest holds beyond the fields both families share, and its
check (whisper_deployable.py writes it): read without torch or TVM's compiler, so a process that
only runs a deployable (`tinyasr transcribe --lib`) imports neither.

    dims      the model's sizes (model/whisper/dims.py)
    decoder   the prompt (sot sequence), eot, no-speech and timestamp ids, the suppress lists,
              n_ctx, the token cap and both no-speech thresholds, the step's cache inputs
    audio     how log_mel's input is padded, the window's frames and the silent peak

These are copies of model/whisper's constants for the board's transcriber (tinyasr-run), which
reads them instead of re-typing the rules; a manifest whose copies differ from this tinyasr's
is refused, as is a deployable of the other family, each in one InputError naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyasr.compile.deployable import (
    LIBRARY_FILE,
    WEIGHTS_FILE,
    check_deployable_files,
    read_family_manifest,
)
from tinyasr.compile.family import WHISPER
from tinyasr.model.whisper.audio import HOP, N_FFT, PAD_SAMPLES, SAMPLE_RATE
from tinyasr.model.whisper.decoding import LOG_PROB_THRESHOLD, NO_SPEECH_THRESHOLD, max_new_tokens
from tinyasr.model.whisper.dims import WhisperDims
from tinyasr.model.whisper.recognizer import SILENT_PEAK
from tinyasr.model.whisper.tokenizer import MERGES_FILE, VOCABULARY_FILE

FUNCTIONS = ("log_mel", "encode", "step")
TOKENIZER_FILES = (VOCABULARY_FILE, MERGES_FILE)


def cache_names(layers: int) -> list[str]:
    """The step function's cache inputs in order (compile/whisper_graphs.py)."""
    return [f"{kind}_{i}" for kind in ("self_k", "self_v", "cross_k", "cross_v")
            for i in range(layers)]


def stop_rules(dims: WhisperDims) -> dict[str, Any]:
    """The decoder's token cap and no-speech rule (model/whisper/decoding.py)."""
    return {"max_new_tokens": max_new_tokens(dims), "no_speech_threshold": NO_SPEECH_THRESHOLD,
            "log_prob_threshold": LOG_PROB_THRESHOLD}


def audio_layout(dims: WhisperDims) -> dict[str, Any]:
    """What a caller of log_mel and encode needs (model/whisper/audio.py, recognizer.py):
    log_mel takes the samples with `hop` zeros appended, reflect-padded by `reflect_pad` each
    side and cut to hop * frames + `pad_samples` (frames = len // hop); encode takes
    `window_frames` frames; a window whose peak is <= `silent_peak` is silent."""
    return {"sample_rate": SAMPLE_RATE, "hop": HOP, "reflect_pad": N_FFT // 2,
            "pad_samples": PAD_SAMPLES, "window_frames": dims.n_frames,
            "silent_peak": SILENT_PEAK}


def read_whisper_manifest(deployable: Path) -> dict[str, Any]:
    """A Whisper deployable's manifest, checked; anything else is one InputError naming it."""
    return read_family_manifest(deployable, WHISPER, _whisper_problem)


def _whisper_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a Whisper manifest's own fields, or None."""
    def ints(value: object) -> bool:
        return isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)

    dims, decoder = manifest.get("dims"), manifest.get("decoder")
    if not isinstance(dims, dict):
        return "dims must be Whisper's sizes"
    try:
        dims = WhisperDims(**dims)
    except TypeError:
        return "dims must be Whisper's sizes"
    if not isinstance(decoder, dict):
        return "decoder must be an object"
    for key in ("sot_sequence", "suppress_ids", "suppress_ids_begin"):
        if not ints(decoder.get(key)) or any(v >= dims.n_vocab for v in decoder[key]):
            return f"decoder.{key} must be token ids below n_vocab {dims.n_vocab}"
    for key in ("eot", "no_speech", "timestamp_begin"):
        if not ints([decoder.get(key)]) or decoder[key] >= dims.n_vocab:
            return f"decoder.{key} must be a token id below n_vocab {dims.n_vocab}"
    if decoder.get("n_ctx") != dims.n_text_ctx:
        return "decoder.n_ctx must equal dims.n_text_ctx"
    for key, value in stop_rules(dims).items():
        if decoder.get(key) != value:
            return f"decoder.{key} {decoder.get(key)!r}, this tinyasr's decoder has {value!r}"
    expected_audio = audio_layout(dims)
    if manifest.get("audio") != expected_audio:
        return f"audio {manifest.get('audio')!r}, this tinyasr's front end has {expected_audio}"
    if decoder.get("caches") != cache_names(dims.n_text_layers):
        return "decoder.caches does not match the decoder's layers"
    if set(manifest["functions"]) != set(FUNCTIONS):
        return f"functions must be {', '.join(FUNCTIONS)}"
    return None


def check_whisper_files(deployable: Path, manifest: dict[str, Any]) -> None:
    """Sizes, sha256 sums, the weights file's structure and every weight a function takes,
    before TVM reads anything; each problem an InputError naming the file."""
    check_deployable_files(deployable, manifest, (LIBRARY_FILE, WEIGHTS_FILE, *TOKENIZER_FILES))
