"""Bad input through every command: one line naming the file or argument, exit code 2, never a
traceback; degenerate but valid input (silence, audio shorter than one frame, a wav with extra
chunks) gives a normal result.

The corpus is generated here (tmp dirs) from the bundled samples and a tiny random model, and
each case runs the real CLI in a subprocess. The subprocesses run a few at a time, once per
module (`results`); each case is then its own test. A compiled deployable is only needed for
the short-audio cases of `transcribe --lib` (marked slow); the deployable corruption cases use
a stand-in deployable whose files are checked before any is loaded. The wav reader, the .tac
reader and the weights-file reader are also fuzzed in process with seeded mutations: each must
give a result or an InputError, nothing else.
"""

from __future__ import annotations

import _ctypes
import hashlib
import json
import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tvm

from tinyasr.compile.deployable import (
    FORMAT,
    LIBRARY_FILE,
    MANIFEST_FILE,
    TOKENS_FILE,
    VERSION,
    WEIGHTS_FILE,
    check_deployable_files,
    read_manifest,
    read_weights_index,
)
from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import load_wav, read_data_dir, read_wav_format
from tinyasr.model.network.compressed import (
    PREFIX,
    load_compressed,
    read_compressed,
    write_compressed,
)
from tinyasr.model.network.framing import MIN_FRAMES, SAMPLES_PER_FRAME, samples_read
from tinyasr.model.network.model_dir import save_model_dir
from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL, SAMPLES_DIR

REPO = Path(__file__).resolve().parent.parent
SAMPLE = read_data_dir(SAMPLES_DIR)[0].wav


# --- building bad files ------------------------------------------------------------------------

def chunk(name: bytes, body: bytes, size: int | None = None) -> bytes:
    """One RIFF chunk; `size` overrides the declared length (the body is written as given)."""
    declared = len(body) if size is None else size
    return name + struct.pack("<I", declared & 0xFFFFFFFF) + body + b"\0" * (len(body) & 1)


def fmt_body(tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16,
             subformat: int | None = None) -> bytes:
    align = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if subformat is not None:   # WAVE_FORMAT_EXTENSIBLE: cbSize, valid bits, mask, GUID
        guid = struct.pack("<H", subformat) + bytes.fromhex("000000001000800000aa00389b71")
        body += struct.pack("<HHI", 22, bits, 4) + guid
    return body


def wav_bytes(samples: bytes, fmt: bytes | None = None, before: bytes = b"",
              after: bytes = b"", data_size: int | None = None) -> bytes:
    body = (b"WAVE" + chunk(b"fmt ", fmt if fmt is not None else fmt_body()) + before
            + chunk(b"data", samples, data_size) + after)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(seconds: float) -> bytes:
    """A 440 Hz tone at int16, as PCM bytes."""
    t = np.arange(int(16000 * seconds)) / 16000
    return (3000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def sample_pcm() -> bytes:
    return load_wav(SAMPLE).astype("<i2").tobytes()


WAVS: dict[str, Callable[[], bytes]] = {
    "zero-samples": lambda: wav_bytes(b""),
    "one-sample": lambda: wav_bytes(b"\x10\x00"),
    "under-one-frame": lambda: wav_bytes(tone(0.05)),
    "silence": lambda: wav_bytes(b"\0\0" * 16000),
    "odd-byte-count": lambda: wav_bytes(b"\x01\x02\x03"),
    "data-past-end": lambda: wav_bytes(tone(0.5), data_size=10**6),
    "junk-after-data": lambda: wav_bytes(sample_pcm(), after=chunk(b"junk", b"\xff" * 9, 10**9)),
    "list-before-data": lambda: wav_bytes(sample_pcm(), before=chunk(b"LIST", b"INFOISFT\0\0\0\0")),
    "extensible-pcm": lambda: wav_bytes(sample_pcm(), fmt=fmt_body(0xFFFE, subformat=1)),
    "streamed-size": lambda: wav_bytes(sample_pcm(), data_size=0xFFFFFFFF),
    "extensible-float": lambda: wav_bytes(tone(0.5), fmt=fmt_body(0xFFFE, bits=32, subformat=3)),
    "float": lambda: wav_bytes(tone(0.5), fmt=fmt_body(3, bits=32)),
    "8khz": lambda: wav_bytes(tone(0.5), fmt=fmt_body(rate=8000)),
    "stereo": lambda: wav_bytes(tone(0.5), fmt=fmt_body(channels=2)),
    "text-file": lambda: b"this is not a wav file\n",
    "empty-file": lambda: b"",
    "header-only": lambda: wav_bytes(tone(0.5))[:20],
    "fmt-size-huge": lambda: (b"RIFF\0\0\0\0WAVE" + b"fmt " + struct.pack("<I", 2**31)
                              + fmt_body()),
    "data-before-fmt": lambda: b"RIFF\0\0\0\0WAVE" + chunk(b"data", tone(0.1)),
}
# what a case gives: None = a transcript (exit 0); "" = an empty transcript; else the error text
WAV_OUTCOMES = {
    "zero-samples": "", "one-sample": "", "under-one-frame": "", "silence": None,
    "odd-byte-count": "truncated wav", "data-past-end": "truncated wav",
    "junk-after-data": None, "list-before-data": None, "extensible-pcm": None,
    "streamed-size": None, "extensible-float": "float samples", "float": "float samples",
    "8khz": "sample rate 8000 Hz", "stereo": "2 channels", "text-file": "unreadable wav",
    "empty-file": "unreadable wav", "header-only": "unreadable wav",
    "fmt-size-huge": "unreadable wav", "data-before-fmt": "unreadable wav",
}


def rewrite_json(path: Path, change: Callable[[object], object]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def aligned(offset: int) -> int:
    return -(-offset // 16) * 16


def tac_header(path: Path) -> tuple[dict, bytes]:
    """A .tac file's header and its data section (parts' offsets are relative to it)."""
    data = path.read_bytes()
    length = PREFIX.unpack_from(data)[2]
    return (json.loads(data[PREFIX.size:PREFIX.size + length]),
            data[aligned(PREFIX.size + length):])


def write_tac(path: Path, header: object, data: bytes) -> None:
    """A .tac of this header (without a checksum, as files written before checksums) and data
    section."""
    if isinstance(header, dict):
        header = {key: value for key, value in header.items() if key != "sha256"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    head = PREFIX.pack(b"TINYASR\x00", 1, len(encoded)) + encoded
    path.write_bytes(head + b"\0" * (aligned(len(head)) - len(head)) + data)


# --- the stand-in deployable --------------------------------------------------------------------

def standin_weights() -> bytes:
    """Three small tensors in TVM's parameter-dict format, written by TVM."""
    tensors = {"encode/a": np.ones((4, 3), np.float32), "encode/b": np.zeros(4, np.float32),
               "decode/c": np.ones((3, 4), np.float32)}
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / WEIGHTS_FILE
        tvm.runtime.save_param_dict_to_file(
            {name: tvm.runtime.tensor(array) for name, array in tensors.items()}, str(path))
        return path.read_bytes()


def make_deployable(out: Path, tokens: list[str]) -> Path:
    """A deployable whose manifest, tokens and weights are well formed and whose model.so is
    not a library: every check before the library load passes on it."""
    out.mkdir(parents=True)
    (out / LIBRARY_FILE).write_bytes(b"\x7fELF" + bytes(range(256)) * 4)
    (out / WEIGHTS_FILE).write_bytes(standin_weights())
    (out / TOKENS_FILE).write_text(json.dumps(tokens))
    manifest = {
        "format": FORMAT, "version": VERSION, "target": "host", "arch": platform.machine(),
        "bytes": {"code": (out / LIBRARY_FILE).stat().st_size,
                  "weights": (out / WEIGHTS_FILE).stat().st_size},
        "audio": {"sample_rate": 16000, "samples_per_frame": SAMPLES_PER_FRAME,
                  "samples_for_zero_frames": samples_read(0), "min_frames": MIN_FRAMES},
        "sos_eos": len(tokens) - 1, "decoder_history": 11,
        "functions": {"encode": {"inputs": ["sizes", "waveform"],
                                 "weights": ["encode/a", "encode/b"]},
                      "decode": {"inputs": ["tokens"], "weights": ["decode/c"]}},
        "sha256": {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
                   for name in (LIBRARY_FILE, WEIGHTS_FILE, TOKENS_FILE)},
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return out


def drop_checksums(deployable: Path) -> None:
    """As a deployable compiled before sizes and checksums were recorded."""
    rewrite_json(deployable / MANIFEST_FILE,
                 lambda m: {k: v for k, v in m.items() if k not in ("sha256", "bytes")})


# --- the corpus ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    command: str                   # for the per-command count
    argv: tuple[str, ...]
    expect: str | None             # None: exit 0; "": exit 0, every transcript empty;
                                   # else exit 2 and this text in the one error line
    names: str | None = None       # the file or argument the error line must name


def build_corpus(root: Path, model_dir: Path, tokens: list[str]) -> dict[str, Case]:
    cases: dict[str, Case] = {}
    wavs = root / "wavs"
    wavs.mkdir()
    for name, make in WAVS.items():
        path = wavs / f"{name}.wav"
        path.write_bytes(make())
        outcome = WAV_OUTCOMES[name]
        cases[f"transcribe-{name}"] = Case("transcribe", ("transcribe", str(model_dir), str(path)),
                                           outcome, None if outcome in (None, "") else str(path))
    cases["transcribe-wav-is-a-directory"] = Case(
        "transcribe", ("transcribe", str(model_dir), str(wavs)), "wav file not found", str(wavs))
    good = str(wavs / "list-before-data.wav")
    for beam in ("0", "-3", "x"):
        cases[f"transcribe-beam-{beam}"] = Case(
            "transcribe", ("transcribe", str(model_dir), good, "--beam", beam), "--beam", "--beam")
    for command in ("report", "bench"):   # the positive-count arguments of the measuring commands
        head = (("report", f"fp32={model_dir}", "--data", str(root), "--out", str(root / "r"))
                if command == "report" else ("bench", "--out", str(root / "b")))
        for argument in ("--beam", "--threads"):
            cases[f"{command}{argument}-0"] = Case(command, (*head, argument, "0"), argument,
                                                   argument)
    cases["transcribe-shipped-int8-tac"] = Case(
        "transcribe", ("transcribe", str(COMPRESSED_MODEL), str(SAMPLE)), None)

    # model dirs: tokens.json and config.json
    def bad_model(name: str, file: str, content: object, expect: str) -> None:
        path = root / "models" / name
        shutil.copytree(model_dir, path)
        (path / file).write_text(content if isinstance(content, str) else json.dumps(content))
        cases[f"transcribe-model-{name}"] = Case(
            "transcribe", ("transcribe", str(path), good), expect, str(path / file))

    config = json.loads((model_dir / "config.json").read_text())
    bad_model("tokens-dict", "tokens.json", {"<blank>": 0, "<unk>": 1}, "got a dict")
    bad_model("tokens-ints", "tokens.json", list(range(len(tokens))), "token 0 is 0")
    bad_model("tokens-no-specials", "tokens.json", tokens[2:-1], "must start with <blank>")
    bad_model("tokens-not-json", "tokens.json", "[\"<blank>\", ", "not a tinyasr token list")
    for name, (change, expect) in {
        "heads-not-dividing": ({"attention_heads": 3}, "divisible by attention_heads"),
        "negative-size": ({"ffn_dim": -64}, "ffn_dim must be an integer >= 1"),
        "zero-size": ({"d_model": 0}, "d_model must be an integer >= 1"),
        "string-size": ({"d_model": "32"}, "d_model must be an integer >= 1"),
        "distinct-0": ({"encoder_distinct": 0}, "encoder_distinct must be an integer >= 1"),
        "distinct-over-layers": ({"encoder_distinct": 7}, "at most encoder_layers"),
        "absurd-size": ({"d_model": 2_000_000, "ffn_dim": 8_000_000}, "parameters"),
        "layers-absurd": ({"encoder_layers": 10**12}, "more than 1000"),
        "unknown-key": ({"activations": "static"}, "unknown model config keys: activations"),
        "dropout-2": ({"dropout": 2.0}, "dropout must be a number in [0, 1)"),
    }.items():
        bad_model(f"config-{name}", "config.json", {**config, **change}, expect)
    bad_model("config-list", "config.json", [config], "must be a JSON object")

    # .tac files
    tac = root / "tiny.tac"
    from tinyasr.model.network.model_dir import load_model_dir
    write_compressed(tac, *load_model_dir(model_dir))

    def bad_tac(name: str, expect: str, edit: Callable[[dict], None] | None = None,
                raw: Callable[[bytes], bytes] | None = None) -> None:
        path = root / "tacs" / f"{name}.tac"
        path.parent.mkdir(exist_ok=True)
        shutil.copy(tac, path)
        if edit is not None:
            header, data = tac_header(path)
            edit(header)
            write_tac(path, header, data)
        if raw is not None:
            path.write_bytes(raw(path.read_bytes()))
        cases[f"transcribe-tac-{name}"] = Case("transcribe", ("transcribe", str(path), good),
                                               expect, str(path))

    first = next(iter(tac_header(tac)[0]["tensors"]))

    def part(header: dict, key: str, value: object) -> None:
        header["tensors"][first]["parts"]["values"][key] = value

    bad_tac("tensors-list", "'tensors' must be a JSON object",
            lambda h: h.update(tensors=list(h["tensors"].values())))
    bad_tac("negative-offset", "offset", lambda h: part(h, "offset", -16))
    bad_tac("offset-past-end", "past the end", lambda h: part(h, "offset", 10**9))
    bad_tac("part-shape", "shape", lambda h: part(h, "shape", [1, 2, 3]))
    bad_tac("config-absurd", "parameters",
            lambda h: h["config"].update(d_model=2_000_000, ffn_dim=8_000_000))
    bad_tac("config-heads", "attention_heads", lambda h: h["config"].update(attention_heads=3))
    bad_tac("config-activations", "activations", lambda h: h["config"].update(activations="x"))
    bad_tac("tokens-ints", "token 0", lambda h: h.update(tokens=list(range(len(h["tokens"])))))
    bad_tac("bit-flip", "sha256", raw=lambda d: d[:-7] + bytes([d[-7] ^ 4]) + d[-6:])
    bad_tac("truncated", "past the end", raw=lambda d: d[:-100])
    bad_tac("header-length-huge", "runs past the end",
            raw=lambda d: d[:12] + struct.pack("<I", 2**31) + d[16:])
    bad_tac("not-a-tac", "bad magic", raw=lambda d: b"GARBAGE" * 10)

    # evaluate: data dirs holding the wavs above, and --json
    def data_dir(name: str, wav: str) -> Path:
        path = root / "data" / name
        path.mkdir(parents=True)
        (path / "wav.scp").write_text(f"a {wavs / (wav + '.wav')}\nb {SAMPLE}\n")
        (path / "text").write_text("a hello\nb world\n")
        return path

    for wav in ("zero-samples", "one-sample", "junk-after-data", "extensible-pcm"):
        cases[f"evaluate-{wav}"] = Case("evaluate", ("evaluate", str(data_dir(wav, wav)),
                                                     "--model", str(model_dir)), None)
        cases[f"data-check-{wav}"] = Case("data check", ("data", "check",
                                                         str(root / "data" / wav)), None)
    for wav in ("odd-byte-count", "header-only", "fmt-size-huge"):
        path = data_dir(wav, wav)
        cases[f"evaluate-{wav}"] = Case("evaluate", ("evaluate", str(path), "--model",
                                                     str(model_dir)), WAV_OUTCOMES[wav],
                                        str(path / "wav.scp"))
        cases[f"data-check-{wav}"] = Case("data check", ("data", "check", str(path)),
                                          WAV_OUTCOMES[wav], str(path / "wav.scp"))
    ok_data = root / "data" / "junk-after-data"
    cases["evaluate-json-new-dir"] = Case("evaluate", (
        "evaluate", str(ok_data), "--model", str(model_dir), "--json",
        str(root / "out" / "deeper" / "scores.json")), None)
    cases["evaluate-json-is-a-directory"] = Case("evaluate", (
        "evaluate", str(ok_data), "--model", str(model_dir), "--json", str(root)),
        "is a directory", "--json")
    cases["evaluate-json-under-a-file"] = Case("evaluate", (
        "evaluate", str(ok_data), "--model", str(model_dir), "--json",
        str(tac / "scores.json")), "not a directory", "--json")
    cases["evaluate-bad-config"] = Case("evaluate", (
        "evaluate", str(ok_data), "--model", str(root / "models" / "config-absurd-size")),
        "parameters", "config.json")

    # compress: training data too short to use, a block shape that divides nothing
    short = root / "short-corpus"
    for split in ("train", "dev"):
        (short / split).mkdir(parents=True)
        (short / split / "wav.scp").write_text(f"a {wavs / 'zero-samples.wav'}\n"
                                               f"b {wavs / 'under-one-frame.wav'}\n")
        (short / split / "text").write_text("a hi\nb yo\n")
    cases["compress-quantize-no-usable-calibration"] = Case("compress", (
        "compress", "quantize", str(model_dir), "--data", str(short), "--out",
        str(root / "q.tac")), "no utterance is long enough", str(short / "train"))
    cases["compress-quantize-calibration-0"] = Case("compress", (
        "compress", "quantize", str(model_dir), "--data", str(short),
        "--calibration-utterances", "0", "--out", str(root / "q.tac")),
        "--calibration-utterances", "--calibration-utterances")
    cases["compress-prune-no-usable-data"] = Case("compress", (
        "compress", "prune", str(model_dir), "--data", str(short), "--sparsity", "0.5",
        "--steps", "1", "--out", str(root / "pruned")), "no utterance is long enough",
        str(short / "train"))
    cases["compress-prune-block-divides-nothing"] = Case("compress", (
        "compress", "prune", str(model_dir), "--data", str(short), "--sparsity", "0.5",
        "--block", "7x7", "--out", str(root / "pruned")), "divides no layer", "--block")
    cases["compress-pack-out-is-a-directory"] = Case("compress", (
        "compress", "pack", str(model_dir), "--out", str(root)), "is a directory", "--out")

    # deployables (transcribe --lib): a stand-in whose files are checked before any is loaded
    deployables = root / "deployables"

    def bad_lib(name: str, expect: str, names: str, edit: Callable[[Path], None]) -> None:
        path = make_deployable(deployables / name, tokens)
        edit(path)
        cases[f"transcribe-lib-{name}"] = Case(
            "transcribe --lib", ("transcribe", "--lib", str(path), good), expect,
            str(path / names) if names in (LIBRARY_FILE, WEIGHTS_FILE, TOKENS_FILE,
                                           MANIFEST_FILE) else str(path))

    def write(name: str, content: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            old = (path / name).read_bytes()
            (path / name).write_bytes(content(old) if callable(content) else content)
        return edit

    def manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            data = json.loads((path / MANIFEST_FILE).read_text())
            change(data)
            (path / MANIFEST_FILE).write_text(json.dumps(data))
        return edit

    rng = random.Random(0)
    noise = bytes(rng.randrange(256) for _ in range(4096))
    names_weights = standin_weights()
    name_length_at = 24   # magic, reserved, name count, then the first name's length

    def unchecked(edit: Callable[[Path], None]) -> Callable[[Path], None]:
        def both(path: Path) -> None:
            edit(path)
            drop_checksums(path)
        return both

    bad_lib("model-so-missing", "missing", LIBRARY_FILE, lambda p: (p / LIBRARY_FILE).unlink())
    bad_lib("model-so-random", "sha256 differs", LIBRARY_FILE,
            write(LIBRARY_FILE, lambda old: noise[:len(old)]))
    bad_lib("model-so-random-unchecked", "no ELF header", LIBRARY_FILE,
            unchecked(write(LIBRARY_FILE, noise)))
    bad_lib("model-so-aarch64", "a library for aarch64", LIBRARY_FILE, unchecked(write(
        LIBRARY_FILE, b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\xb7\x00" + b"\0" * 64)))
    bad_lib("model-so-riscv", "a library for riscv64", LIBRARY_FILE, unchecked(write(
        LIBRARY_FILE, b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\xf3\x00" + b"\0" * 64)))
    bad_lib("model-so-not-a-vm", "cannot load the library", LIBRARY_FILE, unchecked(
        lambda p: shutil.copy(_ctypes.__file__, p / LIBRARY_FILE)))   # a real shared library
    bad_lib("weights-empty", "bytes, the manifest says", WEIGHTS_FILE, write(WEIGHTS_FILE, b""))
    bad_lib("weights-empty-unchecked", "empty weights file", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, b"")))
    bad_lib("weights-truncated", "past the end", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, lambda old: old[:-9])))
    bad_lib("weights-random", "not a TVM weights file", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, noise)))
    bad_lib("weights-name-length-huge", "past the end", WEIGHTS_FILE, unchecked(write(
        WEIGHTS_FILE, lambda old: old[:name_length_at] + struct.pack("<Q", 2**62)
        + old[name_length_at + 8:])))

    first_tensor_at = 24 + 3 * (8 + 8) + 8   # after 3 names of 8 bytes and the tensor count
    assert struct.unpack_from("<Q", names_weights, first_tensor_at)[0] == 0xDD5E40F096B4A13F

    def tensor_field(offset: int, value: bytes) -> Callable[[bytes], bytes]:
        """Overwrite a field of the first tensor's header (ndim at 24, shape at 32)."""
        def edit(old: bytes) -> bytes:
            at = first_tensor_at + offset
            return old[:at] + value + old[at + len(value):]
        return edit

    bad_lib("weights-negative-ndim", "bad header", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, tensor_field(24, struct.pack("<i", -5)))))
    bad_lib("weights-huge-ndim", "bad header", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, tensor_field(24, struct.pack("<i", 2**30)))))
    bad_lib("weights-negative-dim", "disagree", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, tensor_field(32, struct.pack("<q", -4)))))
    bad_lib("weights-renamed-key", "no weight 'encode/a'", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, lambda old: old.replace(b"encode/a", b"encode/z"))))
    bad_lib("weights-swapped-keys", "sha256 differs", WEIGHTS_FILE,
            write(WEIGHTS_FILE, lambda old: old.replace(b"encode/a", b"encode/#")
                  .replace(b"decode/c", b"encode/a").replace(b"encode/#", b"decode/c")))
    bad_lib("tokens-tampered", "sha256 differs", TOKENS_FILE,
            write(TOKENS_FILE, lambda old: old.replace(b'"a"', b'"b"', 1)))
    bad_lib("tokens-dict", "not a tinyasr token list", TOKENS_FILE,
            unchecked(write(TOKENS_FILE, b'{"<blank>": 0}')))
    bad_lib("manifest-no-functions", "functions", MANIFEST_FILE,
            manifest(lambda m: m.pop("functions")))
    bad_lib("manifest-functions-list", "functions", MANIFEST_FILE,
            manifest(lambda m: m.update(functions=[1, 2])))
    bad_lib("manifest-weights-not-list", "functions.encode", MANIFEST_FILE,
            manifest(lambda m: m["functions"]["encode"].update(weights=7)))
    bad_lib("manifest-sos-out-of-range", "sos_eos", MANIFEST_FILE,
            manifest(lambda m: m.update(sos_eos=999)))
    bad_lib("manifest-sos-string", "sos_eos", MANIFEST_FILE,
            manifest(lambda m: m.update(sos_eos="25")))
    bad_lib("manifest-history-0", "decoder_history", MANIFEST_FILE,
            manifest(lambda m: m.update(decoder_history=0)))
    bad_lib("manifest-history-huge", "decoder_history", MANIFEST_FILE,
            manifest(lambda m: m.update(decoder_history=10**12)))
    bad_lib("manifest-not-json", "not a tinyasr deployable", "",
            write(MANIFEST_FILE, b"{not json"))
    bad_lib("manifest-other-arch", "this machine is", "",
            manifest(lambda m: m.update(arch="riscv64", target="k230")))
    bad_lib("manifest-audio", "audio framing", MANIFEST_FILE,
            manifest(lambda m: m["audio"].update(samples_per_frame=320)))
    cases["transcribe-lib-not-a-dir"] = Case(
        "transcribe --lib", ("transcribe", "--lib", str(root / "nowhere"), good),
        "not a tinyasr deployable", str(root / "nowhere"))
    return cases


ENV = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}


def run_cli(argv: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`python -m tinyasr.scripts.cli ARGV` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tinyasr.scripts.cli", *argv], cwd=REPO,
                          capture_output=True, text=True, env=ENV, timeout=300, check=False)


# Runs many command lines in one fresh interpreter, each through the CLI's main() as
# `python -m tinyasr.scripts.cli` does (an exception main() lets through is printed as the
# interpreter prints it, exit code 1): the corpus then costs one start-up of torch and TVM per
# batch instead of one per case. test_the_real_entry_point_agrees runs a few cases one process
# each to show the two agree.
DRIVER = """
import contextlib, io, json, sys, traceback
from tinyasr.scripts.cli import main
results = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append([code, out.getvalue(), err.getvalue()])
json.dump(results, sys.__stdout__)
"""


def run_batch(argvs: list[tuple[str, ...]]) -> list[subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=REPO, input=json.dumps(argvs),
                          capture_output=True, text=True, env=ENV, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return [subprocess.CompletedProcess(argv, code, out, err)
            for argv, (code, out, err) in zip(argvs, json.loads(done.stdout), strict=True)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_random_model) -> Path:
    path = tmp_path_factory.mktemp("bad-model") / "tiny"
    save_model_dir(*tiny_random_model, path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, model_dir: Path,
           tiny_random_model) -> dict[str, Case]:
    return build_corpus(tmp_path_factory.mktemp("bad-inputs"), model_dir,
                        tiny_random_model[1].tokens)


@pytest.fixture(scope="module")
def results(corpus: dict[str, Case]) -> dict[str, subprocess.CompletedProcess]:
    """Every case's CLI run: in two fresh interpreters side by side."""
    names = list(corpus)
    batches = [names[0::2], names[1::2]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = pool.map(run_batch, ([corpus[name].argv for name in batch] for batch in batches))
        return {name: result for batch, done in zip(batches, runs, strict=True)
                for name, result in zip(batch, done, strict=True)}


def problem(case: Case, result: subprocess.CompletedProcess) -> str | None:
    """What is wrong with a case's run, or None."""
    if "Traceback" in result.stderr:
        return f"traceback: {result.stderr[-800:]}"
    if case.expect is None or case.expect == "":
        if result.returncode != 0 or "error" in result.stderr:
            return f"exit {result.returncode}: {result.stderr[-400:]}"
        if case.expect == "" and not all(line.endswith("\t")
                                         for line in result.stdout.splitlines() or ["?"]):
            return f"expected an empty transcript, got {result.stdout!r}"
        return None
    if result.returncode != 2:
        return f"exit {result.returncode}, expected 2: {result.stderr[-400:]}"
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith("tinyasr: warning: ")]
    if lines and lines[0].startswith("usage:"):   # argparse: usage, then its one error line
        lines = [line for line in lines if " error: " in line]
    if len(lines) != 1 or " error: " not in lines[0]:
        return f"expected one error line, got {result.stderr!r}"
    for text in (case.expect, case.names or ""):
        if text not in lines[0]:
            return f"{text!r} not in {lines[0]!r}"
    return None


COMMANDS = ["transcribe", "transcribe --lib", "evaluate", "data check", "compress", "report",
            "bench"]


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_is_one_line_and_degenerate_input_a_normal_result(
        command: str, corpus: dict[str, Case], results: dict) -> None:
    cases = {name: case for name, case in corpus.items() if case.command == command}
    assert cases
    problems = {name: problem(case, results[name]) for name, case in cases.items()}
    assert {name: text for name, text in problems.items() if text} == {}


REAL_ENTRY_POINT_CASES = ["transcribe-zero-samples", "transcribe-beam-0",
                          "transcribe-tac-bit-flip", "transcribe-lib-weights-name-length-huge",
                          "evaluate-json-is-a-directory", "data-check-odd-byte-count",
                          "compress-prune-block-divides-nothing"]


@pytest.mark.parametrize("name", REAL_ENTRY_POINT_CASES)
def test_the_real_entry_point_agrees(name: str, corpus: dict[str, Case], results: dict) -> None:
    alone = run_cli(corpus[name].argv)
    assert problem(corpus[name], alone) is None
    batched = results[name]
    assert (alone.returncode, alone.stdout, alone.stderr) == (
        batched.returncode, batched.stdout, batched.stderr)


def test_every_case_runs_once(corpus: dict[str, Case]) -> None:
    counts = {command: sum(case.command == command for case in corpus.values())
              for command in COMMANDS}
    assert {case.command for case in corpus.values()} == set(COMMANDS)
    print("bad-input cases per command:", counts)


# --- fuzzing the readers in process --------------------------------------------------------------

def mutations(good: bytes, count: int, seed: int, header_bytes: int) -> list[bytes]:
    """Seeded mutations of a file: bit flips, truncations, inserted bytes, and 4- or 8-byte
    fields set to huge, negative or zero values, mostly within its first `header_bytes`."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(good)
        kind = rng.randrange(5)
        span = min(len(data), header_bytes)
        if kind == 0:
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(span)
                data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data = data[:rng.randrange(len(data))]
        elif kind == 2:
            at = rng.randrange(span)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
        else:
            width = 4 if kind == 3 else 8
            value = rng.choice([0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**62, -2**40])
            at = rng.randrange(max(1, span - width))
            data[at:at + width] = (value % 2**(8 * width)).to_bytes(width, "little")
        out.append(bytes(data))
    return out


def test_wav_reader_gives_samples_or_an_input_error_on_300_mutations(tmp_path: Path) -> None:
    good = wav_bytes(sample_pcm()[:32000], before=chunk(b"LIST", b"INFOISFT\0\0\0\0"),
                     after=chunk(b"junk", b"\1" * 9))
    outcomes = {"samples": 0, "InputError": 0}
    for index, data in enumerate(mutations(good, 300, seed=1, header_bytes=80)):
        path = tmp_path / f"{index}.wav"
        path.write_bytes(data)
        try:
            samples = load_wav(path)
            found = read_wav_format(path)
            assert len(samples) == found.samples and found.data_offset + found.data_bytes \
                <= len(data)
            outcomes["samples"] += 1
        except InputError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            outcomes["InputError"] += 1
    assert min(outcomes.values()) > 20, outcomes   # both outcomes well exercised


def random_value(rng: random.Random) -> object:
    return rng.choice([-1, 0, 1, 10**12, -10**12, 1.5, "x", None, True, [], {}, [1, 2],
                       {"a": 1}, float("nan")])


def mutate_json(value: object, rng: random.Random) -> object:
    """The JSON value with one randomly chosen node (at any depth) replaced or removed."""
    if isinstance(value, dict) and value and rng.random() < 0.85:
        key = rng.choice(list(value))
        if rng.random() < 0.1:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: mutate_json(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.85:
        index = rng.randrange(len(value))
        return [*value[:index], mutate_json(value[index], rng), *value[index + 1:]]
    return random_value(rng)


def test_tac_reader_gives_a_model_or_an_input_error_on_300_mutations(
        tmp_path: Path, tiny_random_model) -> None:
    good = tmp_path / "good.tac"
    write_compressed(good, *tiny_random_model)
    header, data = tac_header(good)
    rng = random.Random(2)
    outcomes = {"model": 0, "InputError": 0}
    files = [("header", mutate_json(header, rng)) for _ in range(200)]
    files += [("bytes", mutated) for mutated in mutations(good.read_bytes(), 100, seed=3,
                                                           header_bytes=4000)]
    for index, (kind, content) in enumerate(files):
        path = tmp_path / f"{index}.tac"
        if kind == "header":
            write_tac(path, content, data)
        else:
            path.write_bytes(content)
        try:
            read_compressed(path)
            load_compressed(path)
            outcomes["model"] += 1
        except InputError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            outcomes["InputError"] += 1
    assert min(outcomes.values()) > 5, outcomes


def test_weights_reader_gives_an_index_or_an_input_error_on_300_mutations(
        tmp_path: Path, tiny_random_model) -> None:
    deployable = make_deployable(tmp_path / "lib", tiny_random_model[1].tokens)
    drop_checksums(deployable)
    manifest = read_manifest(deployable)
    good = (deployable / WEIGHTS_FILE).read_bytes()
    outcomes = {"index": 0, "InputError": 0}
    for data in mutations(good, 300, seed=4, header_bytes=len(good)):
        (deployable / WEIGHTS_FILE).write_bytes(data)
        try:
            check_deployable_files(deployable, manifest)
            index = read_weights_index(deployable / WEIGHTS_FILE)
            tvm.runtime.load_param_dict_from_file(str(deployable / WEIGHTS_FILE))
            assert {"encode/a", "encode/b", "decode/c"} <= set(index)
            outcomes["index"] += 1
        except InputError as error:
            assert "\n" not in str(error)
            outcomes["InputError"] += 1
    assert min(outcomes.values()) > 20, outcomes


def test_shipped_tac_files_still_load_without_a_checksum() -> None:
    for path in COMPRESSED_MODEL.parent.glob("*.tac"):
        assert "sha256" not in read_compressed(path).header
        load_compressed(path)


# --- a compiled deployable ---------------------------------------------------------------------

@pytest.mark.slow
def test_compiled_library_transcribes_short_audio_as_empty_text(
        tmp_path: Path, model_dir: Path) -> None:
    from tinyasr.scripts.cli import main

    out = tmp_path / "host"
    assert main(["compile", str(model_dir), "--target", "host", "--out", str(out),
                 "--untuned"]) == 0
    manifest = read_manifest(out)
    assert set(manifest["sha256"]) == {LIBRARY_FILE, WEIGHTS_FILE, TOKENS_FILE}
    check_deployable_files(out, manifest)
    wavs = []
    for name in ("zero-samples", "one-sample", "under-one-frame"):
        wavs.append(tmp_path / f"{name}.wav")
        wavs[-1].write_bytes(WAVS[name]())
    result = run_cli(("transcribe", "--lib", str(out), *map(str, wavs), str(SAMPLE)))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [f"{wav}\t" for wav in wavs]
    assert lines[3].startswith(f"{SAMPLE}\t")
    (out / WEIGHTS_FILE).write_bytes((out / WEIGHTS_FILE).read_bytes().replace(
        manifest["functions"]["encode"]["weights"][0].encode(), b"x" * len(
            manifest["functions"]["encode"]["weights"][0]), 1))
    result = run_cli(("transcribe", "--lib", str(out), str(SAMPLE)))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"{out / WEIGHTS_FILE}: sha256 differs" in result.stderr


def test_parameter_bound_counts_what_the_model_holds(tiny_random_model) -> None:
    from tinyasr.model.network.model_dir import load_model_dir
    from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL

    for model in (tiny_random_model[0], load_model_dir(DEFAULT_MODEL)[0]):
        assert model.config.parameter_count() == sum(
            tensor.numel() for tensor in model.state_dict().values())
