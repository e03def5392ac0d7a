"""Bad files built from good ones: wavs (RIFF chunks by hand), .tac files (header and data
rewritten), a stand-in deployable whose files are well formed but whose library is not one, and
Kaldi data dirs."""

from __future__ import annotations

import hashlib
import json
import platform
import random
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tvm

from tinyasr.compile.deployable import (
    AUDIO,
    FORMAT,
    LIBRARY_FILE,
    MANIFEST_FILE,
    TOKENS_FILE,
    VERSION,
    WEIGHTS_FILE,
)
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.compressed import PREFIX
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR

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


def make_deployable(out: Path, tokens: list[str], model: Path | None = None) -> Path:
    """A deployable whose manifest, tokens and weights are well formed and whose model.so is
    not a library: every check before the library load passes on it. `model`: the model it
    says it was compiled from (rpc-test's reference)."""
    out.mkdir(parents=True)
    (out / LIBRARY_FILE).write_bytes(b"\x7fELF" + bytes(range(256)) * 4)
    (out / WEIGHTS_FILE).write_bytes(standin_weights())
    (out / TOKENS_FILE).write_text(json.dumps(tokens))
    manifest = {
        "format": FORMAT, "version": VERSION, "target": "host", "arch": platform.machine(),
        "bytes": {"code": (out / LIBRARY_FILE).stat().st_size,
                  "weights": (out / WEIGHTS_FILE).stat().st_size},
        "audio": AUDIO,
        "model": {"path": str(model or out / "no-model"), "sha256": "0" * 64},
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


def write_data_dir(path: Path, wav_scp: str | bytes, text: str | bytes,
                   utt2spk: str | bytes | None = None) -> Path:
    """A Kaldi data dir of these table files, written as given (bytes: not even UTF-8)."""
    path.mkdir(parents=True)
    for name, content in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk)):
        if content is not None:
            (path / name).write_bytes(content if isinstance(content, bytes)
                                      else content.encode())
    return path


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


def mutated_wavs(directory: Path, count: int = 300) -> list[Path]:
    """`count` seeded mutations of one wav (a LIST chunk before its data, a junk chunk after),
    written to `directory` as 0.wav, 1.wav, ...: the wav fuzz every wav reader is put through."""
    good = wav_bytes(sample_pcm()[:32000], before=chunk(b"LIST", b"INFOISFT\0\0\0\0"),
                     after=chunk(b"junk", b"\1" * 9))
    paths = []
    for index, data in enumerate(mutations(good, count, seed=1, header_bytes=80)):
        paths.append(directory / f"{index}.wav")
        paths[-1].write_bytes(data)
    return paths


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
