"""Twins: what the board transcriber (targets/native/src/tinyasr_run.cc) does in C++ and the host
does in Python, checked here to agree, exactly, on inputs chosen to reach their corners. The CTC
search has no twin: targets/native/src/ctc_search.h is compiled into tinyasr-run and loaded by
the host (model/decoding/search.py). The C++ runs in two small drivers built with the host's g++
(targets/native/tests/), without TVM; end to end, tests/test_tinyasr_run.py and
tests/test_windows.py compare the boards' transcripts with the host's.

  C++ (targets/native/src/)             Python
  wav.h ReadWav                         model/data/datadir.py load_wav
  decoding.h BuildDecoderTree,          model/decoding/prefix_tree.py prefix_tree,
    DecoderTree::Scores                   PrefixTree.scores
  decoding.h AttentionRescoring         model/decoding/search.py attention_rescoring
  decoding.h WindowBounds               model/network/windows.py window_bounds
  decoding.h Framing                    model/network/framing.py encoder_frames, samples_read
                                          (as targets/host/runner.py frames audio)
  constants: tinyasr_run.cc file        compile/deployable.py; DecodeOptions; windows.py
    names, decoding.h weights/lengths
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tinyasr.compile import deployable
from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import load_wav
from tinyasr.model.decoding.search import NATIVE_DIR

NATIVE = NATIVE_DIR.parent
TINYASR_RUN = NATIVE_DIR / "tinyasr_run.cc"


def _driver(name: str, out_dir: Path) -> Path:
    """targets/native/tests/NAME.cc built for the host with g++ alone, warnings as errors."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no g++")
    out = out_dir / name
    subprocess.run([compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror",
                    f"-I{NATIVE_DIR}", str(NATIVE / "tests" / f"{name}.cc"), "-o", str(out)],
                   check=True)
    return out


@pytest.fixture(scope="module")
def wav_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wav.h's ReadWav: raw float32 samples on stdout, or the error on stderr."""
    return _driver("wav_dump", tmp_path_factory.mktemp("twins"))


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[dict]]:
    """decoding.h's functions: commands in, one JSON object out per command."""
    driver = _driver("twins_dump", tmp_path_factory.mktemp("twins"))

    def run(commands: str) -> list[dict]:
        result = subprocess.run([str(driver)], input=commands, capture_output=True, text=True,
                                timeout=120, check=True)
        return [json.loads(line) for line in result.stdout.splitlines()]

    return run


def _chunk(name: bytes, body: bytes, size: int | None = None) -> bytes:
    pad = b"\0" if len(body) % 2 else b""
    return name + struct.pack("<I", len(body) if size is None else size) + body + pad


def _fmt(tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16) -> bytes:
    align = channels * -(-bits // 8)
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def _extensible(subtag: int = 1, bits: int = 16, guid_tail: bytes | None = None) -> bytes:
    tail = bytes.fromhex("000000001000800000aa00389b71") if guid_tail is None else guid_tail
    return (_fmt(0xFFFE, bits=bits) + struct.pack("<HHI", 22, bits, 4)
            + struct.pack("<H", subtag) + tail)


def _riff(*chunks: bytes, size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


PCM = np.array([0, 1, -1, 32767, -32768, 1234, -4321], dtype="<i2").tobytes()

ODD_WAVS: dict[str, bytes] = {
    "plain": _riff(_chunk(b"fmt ", _fmt()), _chunk(b"data", PCM)),
    "odd LIST chunk first, padded": _riff(_chunk(b"LIST", b"INFOabc"), _chunk(b"fmt ", _fmt()),
                                          _chunk(b"data", PCM)),
    "fmt with cbSize 0 (18 bytes)": _riff(_chunk(b"fmt ", _fmt() + b"\0\0"),
                                          _chunk(b"data", PCM)),
    "extensible PCM": _riff(_chunk(b"fmt ", _extensible()), _chunk(b"data", PCM)),
    "extensible float": _riff(_chunk(b"fmt ", _extensible(3, 32)), _chunk(b"data", PCM)),
    "extensible, unknown GUID": _riff(_chunk(b"fmt ", _extensible(guid_tail=bytes(14))),
                                      _chunk(b"data", PCM)),
    "extensible too short": _riff(_chunk(b"fmt ", _fmt(0xFFFE) + b"\x16\0"),
                                  _chunk(b"data", PCM)),
    "float": _riff(_chunk(b"fmt ", _fmt(3, bits=32)), _chunk(b"data", PCM)),
    "mu-law": _riff(_chunk(b"fmt ", _fmt(7, bits=8)), _chunk(b"data", PCM)),
    "tag 0x55": _riff(_chunk(b"fmt ", _fmt(0x55)), _chunk(b"data", PCM)),
    "streamed: data size unknown": _riff(_chunk(b"fmt ", _fmt()),
                                         b"data" + struct.pack("<I", 0xFFFFFFFF) + PCM,
                                         size=0xFFFFFFFF),
    "chunk after data": _riff(_chunk(b"fmt ", _fmt()), _chunk(b"data", PCM),
                              _chunk(b"LIST", b"trailing")),
    "empty data": _riff(_chunk(b"fmt ", _fmt()), _chunk(b"data", b"")),
    "truncated data": _riff(_chunk(b"fmt ", _fmt()), _chunk(b"data", PCM, size=100))[:-2],
    "odd data bytes": _riff(_chunk(b"fmt ", _fmt()), _chunk(b"data", PCM + b"\x01")),
    "data before fmt": _riff(_chunk(b"data", PCM), _chunk(b"fmt ", _fmt())),
    "no data": _riff(_chunk(b"fmt ", _fmt())),
    "no fmt": _riff(_chunk(b"LIST", b"INFO")),
    "not RIFF": b"RIFX" + _riff(_chunk(b"fmt ", _fmt()), _chunk(b"data", PCM))[4:],
    "too short": b"RIFF\0\0",
    "empty": b"",
    "chunk past the end": _riff(_chunk(b"fmt ", _fmt()), _chunk(b"j'nk", b"x", size=999)),
    "binary chunk name past the end": _riff(_chunk(b"\x00\x7f\\\t", b"x", size=999)),
    "fmt of 14 bytes": _riff(_chunk(b"fmt ", _fmt()[:14]), _chunk(b"data", PCM)),
    "8 kHz": _riff(_chunk(b"fmt ", _fmt(rate=8000)), _chunk(b"data", PCM)),
    "stereo": _riff(_chunk(b"fmt ", _fmt(channels=2)), _chunk(b"data", PCM[:12])),
    "8-bit": _riff(_chunk(b"fmt ", _fmt(bits=8)), _chunk(b"data", PCM)),
    "24-bit": _riff(_chunk(b"fmt ", _fmt(bits=24)), _chunk(b"data", PCM[:12])),
    "no channels": _riff(_chunk(b"fmt ", _fmt(channels=0)), _chunk(b"data", PCM)),
}


def _python(path: Path) -> np.ndarray | str:
    try:
        return load_wav(path)
    except InputError as error:
        return str(error)


def _cpp(wav_dump: Path, path: Path) -> np.ndarray | str:
    run = subprocess.run([str(wav_dump), str(path)], capture_output=True, timeout=60)
    if run.returncode == 2:
        return run.stderr.decode().removeprefix("wav_dump: error: ").rstrip("\n")
    assert run.returncode == 0, run.stderr
    return np.frombuffer(run.stdout, dtype=np.float32)


def test_wav_readers_agree_on_odd_wavs(wav_dump: Path, tmp_path: Path):
    """wav.h ReadWav (tinyasr-run's) and model/data/datadir.py load_wav (the host's): the same
    samples, or the same one-line error, for every wav here, a missing file and a directory."""
    paths = [tmp_path / "missing.wav", tmp_path]
    for name, data in ODD_WAVS.items():
        path = tmp_path / (re.sub(r"\W+", "_", name) + ".wav")
        path.write_bytes(data)
        paths.append(path)
    accepted = 0
    for path in paths:
        python, cpp = _python(path), _cpp(wav_dump, path)
        if isinstance(python, str):
            assert cpp == python, path.name
        else:
            assert isinstance(cpp, np.ndarray) and cpp.dtype == python.dtype, (path.name, cpp)
            assert np.array_equal(cpp, python), path.name
            accepted += 1
    assert accepted == 7   # plain, LIST first, cbSize 0, extensible, streamed, chunk after
    #                        data, empty data


def test_wav_readers_agree_on_the_bundled_samples(wav_dump: Path):
    from tinyasr.model.data.datadir import read_data_dir
    from tinyasr.model.network.pretrained_paths import SAMPLES_DIR

    for utterance in read_data_dir(SAMPLES_DIR):
        assert np.array_equal(_cpp(wav_dump, utterance.wav), load_wav(utterance.wav)), utterance


def test_constants_agree():
    """tinyasr_run.cc's deployable file names and format (compile/deployable.py), decoding.h's
    rescoring weight (DecodeOptions.rescoring_ctc_weight) and window lengths (windows.py)."""
    from tinyasr.model.decoding.options import DecodeOptions
    from tinyasr.model.network import windows

    found = dict(re.findall(r'constexpr const char\* (k\w+) = "([^"]*)";',
                            TINYASR_RUN.read_text()))
    numbers = {name: float(value) for name, value in re.findall(
        r"constexpr double (k\w+) = ([\d.]+);", (NATIVE_DIR / "decoding.h").read_text())}
    assert numbers == {"kRescoringCtcWeight": DecodeOptions().rescoring_ctc_weight,
                       "kMaxWindowSeconds": windows.MAX_SECONDS,
                       "kSearchSeconds": windows.SEARCH_SECONDS}
    expected = {"kManifestFile": "/" + deployable.MANIFEST_FILE,
                "kLibraryFile": "/" + deployable.LIBRARY_FILE,
                "kWeightsFile": "/" + deployable.WEIGHTS_FILE,
                "kTokensFile": "/" + deployable.TOKENS_FILE,
                "kDeployableFormat": deployable.FORMAT}
    assert {key: found.get(key) for key in expected} == expected


def _hypotheses(rng: np.random.Generator, count: int, vocab: int) -> list[tuple[int, ...]]:
    """An n-best-like set: shared prefixes, one empty hypothesis, a duplicate."""
    base = [int(t) for t in rng.integers(1, vocab - 1, 12)]
    hypotheses = [tuple(base[:int(rng.integers(0, 13))]) + tuple(
        int(t) for t in rng.integers(1, vocab - 1, int(rng.integers(0, 4))))
        for _ in range(count - 2)]
    return [*hypotheses, (), hypotheses[0]]


def _floats(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in np.asarray(values).ravel())


def test_decoder_tree_matches_prefix_tree(twins):
    """decoding.h BuildDecoderTree and DecoderTree::Scores against model/decoding/prefix_tree.py
    prefix_tree and PrefixTree.scores: the same nodes in the same order, the same decoder inputs,
    the same float32 scores, for FSMN widths from 1 to deeper than the tree."""
    from tinyasr.model.decoding.prefix_tree import prefix_tree

    rng = np.random.default_rng(0)
    vocab = 9
    for width in (1, 2, 5, 11, 40):
        hypotheses = _hypotheses(rng, 10, vocab)
        tree = prefix_tree(hypotheses, vocab - 1, width)
        log_probs = np.log(rng.dirichlet(np.ones(vocab), len(tree.tokens))).astype(np.float32)
        command = (f"tree {vocab - 1} {width} {len(hypotheses)} "
                   + " ".join(f"{len(h)} {' '.join(map(str, h))}" for h in hypotheses)
                   + f" {vocab} {_floats(log_probs)}\n")
        (cpp,) = twins(command)
        assert cpp["tokens"] == tree.tokens.tolist()
        assert cpp["depths"] == tree.depths.tolist()
        assert cpp["ancestors"] == tree.ancestors.astype(int).ravel().tolist()
        assert cpp["history"] == tree.history.ravel().tolist()
        assert cpp["paths"] == tree.paths
        assert np.array_equal(np.array(cpp["scores"], dtype=np.float32), tree.scores(log_probs))


def test_rescoring_ranks_as_python(twins):
    """decoding.h AttentionRescoring against model/decoding/search.py attention_rescoring:
    float32 totals, the first of equal totals, on random n-bests and ones built to tie."""
    from tinyasr.model.decoding.search import attention_rescoring

    rng = np.random.default_rng(1)
    cases = []
    for trial in range(200):
        count = int(rng.integers(1, 8))
        nbest = [(tuple(int(t) for t in rng.integers(1, 50, int(rng.integers(0, 6)))),
                  float(-rng.exponential(20))) for _ in range(count)]
        attention = (-rng.exponential(10, count)).astype(np.float32)
        if trial % 3 == 0:   # exact ties, and totals equal only after rounding to float32
            attention[:] = attention[0]
            nbest = [(h, nbest[0][1] + i * 1e-12) for i, (h, _) in enumerate(nbest)]
        cases.append((nbest, attention))
    commands = "".join(
        f"rescore {len(nbest)} " + " ".join(
            f"{ctc!r} {float(att)!r} {len(h)} {' '.join(map(str, h))}"
            for (h, ctc), att in zip(nbest, attention, strict=True)) + "\n"
        for nbest, attention in cases)
    for (nbest, attention), cpp in zip(cases, twins(commands), strict=True):
        expected = attention_rescoring(nbest, lambda _, scores=attention: scores)
        assert nbest[cpp["best"]][0] == expected


def test_window_bounds_cut_where_python_does(twins):
    """decoding.h WindowBounds against model/network/windows.py window_bounds: noise with
    pauses, silence (every frame tied: the latest wins) and lengths around the 30 s limit."""
    from tinyasr.model.network import windows
    from tinyasr.model.network.framing import SAMPLE_RATE

    rng = np.random.default_rng(2)
    noise = rng.normal(0, 3000, 95 * SAMPLE_RATE).clip(-32768, 32767).astype(np.int16)
    for start in (27 * SAMPLE_RATE, 55 * SAMPLE_RATE + 37):
        noise[start:start + SAMPLE_RATE // 5] = rng.integers(-2, 3, SAMPLE_RATE // 5)
    longest = int(windows.MAX_SECONDS * SAMPLE_RATE)
    audios = [noise, noise[:longest], noise[:longest + 1], np.zeros(65 * SAMPLE_RATE, np.int16),
              noise[:3]]
    commands = "".join(f"windows {SAMPLE_RATE} {len(a)} {' '.join(map(str, a.tolist()))}\n"
                       for a in audios)
    for audio, cpp in zip(audios, twins(commands), strict=True):
        expected = windows.window_bounds(audio.astype(np.float32))
        assert [tuple(b) for b in cpp["bounds"]] == expected, len(audio)


def test_framing_reads_what_the_host_reads(twins):
    """decoding.h Framing (closed form, from the manifest) against model/network/framing.py
    encoder_frames and samples_read, as targets/host/runner.py frames audio."""
    from tinyasr.model.network.framing import (
        MIN_FRAMES,
        SAMPLES_PER_FRAME,
        encoder_frames,
        samples_read,
    )

    lengths = [*range(0, 3000), *range(3000, 500_000, 997)]
    (cpp,) = twins(f"frames {SAMPLES_PER_FRAME} {samples_read(0)} {MIN_FRAMES} {len(lengths)} "
                   + " ".join(map(str, lengths)) + "\n")
    assert cpp["frames"] == [max(MIN_FRAMES, encoder_frames(n)) for n in lengths]
    assert cpp["read"] == [samples_read(i) for i in range(len(lengths))]
