"""Twins: what the board transcriber (targets/native/src/tinyasr_run.cc) does in C++ and the host
does in Python, checked here to agree, exactly, on inputs chosen to reach their corners. The CTC
search and the prefix tree have no twins: targets/native/src/ctc_search.h and decoding.h are
compiled into tinyasr-run and loaded by the host (model/decoding/native.py). The C++ runs in
two small drivers built with the host's g++ (targets/native/tests/), without TVM; end to end,
tests/test_tinyasr_run.py and tests/test_windows.py compare the boards' transcripts with the
host's.

  C++ (targets/native/src/)             Python
  wav.h ReadWav                         model/data/datadir.py load_wav
  decoding.h AttentionRescoring         model/decoding/search.py attention_rescoring
  decoding.h WindowBounds               model/network/windows.py window_bounds
  decoding.h Framing                    model/network/framing.py encoder_frames, samples_read
                                          (as targets/host/runner.py frames audio)
  constants: tinyasr_run.cc,            compile/deployable.py, family.py; DecodeOptions;
    deployable_io.h, whisper_deployable.h   windows.py; model/whisper/tokenizer.py
    file names and families, decoding.h
    weights/lengths
  bpe.h ByteLevelVocabulary::Decode,    model/whisper/tokenizer.py WhisperTokenizer.decode,
    StripSpaces, ReplaceInvalidUtf8       str.strip, bytes.decode("utf-8", "replace")
  whisper_decode.h GreedyWindow,        model/whisper/decoding.py greedy_search, Suppression,
    Suppression, IsSilence                SearchResult.is_silence
  whisper_decode.h WhisperAudio         model/whisper/recognizer.py window_starts,
    ::Windows, ::PaddedSignal             model/whisper/audio.py padded_signal

Whisper's rules and constants reach tinyasr-run through the deployable's manifest
(compile/whisper_manifest.py writes them from model/whisper's definitions); the twins here are
given the same values.
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
from tinyasr.model.decoding.native import NATIVE_DIR

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
        # "\n" only: decoded text may hold U+2028 and the like, which splitlines() also splits at
        return [json.loads(line) for line in result.stdout.split("\n") if line]

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


def test_wav_readers_agree_on_300_mutations(wav_dump: Path, tmp_path: Path):
    """The fuzz of tests/test_bad_inputs.py (the same seeded mutations of a wav with a LIST
    chunk before and a junk chunk after its data) through both readers: the same samples or the
    same one-line error, and the C++ one never crashes (wav_dump exits 0 or 2)."""
    from bad_inputs.files import mutated_wavs

    outcomes = {"samples": 0, "error": 0}
    for path in mutated_wavs(tmp_path):
        python, cpp = _python(path), _cpp(wav_dump, path)
        if isinstance(python, str):
            assert cpp == python, path.name
            outcomes["error"] += 1
        else:
            assert isinstance(cpp, np.ndarray) and np.array_equal(cpp, python), path.name
            outcomes["samples"] += 1
    assert min(outcomes.values()) > 20, outcomes


def test_wav_readers_agree_on_the_bundled_samples(wav_dump: Path):
    from tinyasr.model.data.datadir import read_data_dir
    from tinyasr.model.network.pretrained_paths import SAMPLES_DIR

    for utterance in read_data_dir(SAMPLES_DIR):
        assert np.array_equal(_cpp(wav_dump, utterance.wav), load_wav(utterance.wav)), utterance


def test_constants_agree():
    """tinyasr_run.cc's deployable file names and format (compile/deployable.py), decoding.h's
    rescoring weight (DecodeOptions.rescoring_ctc_weight) and window lengths (windows.py)."""
    from tinyasr.compile.family import SAN_M, WHISPER
    from tinyasr.model.decoding.options import DecodeOptions
    from tinyasr.model.network import windows
    from tinyasr.model.whisper.tokenizer import VOCABULARY_FILE

    sources = [TINYASR_RUN, NATIVE_DIR / "deployable_io.h", NATIVE_DIR / "whisper_deployable.h"]
    found = dict(re.findall(r'constexpr const char\* (k\w+) = "([^"]*)";',
                            "".join(path.read_text() for path in sources)))
    numbers = {name: float(value) for name, value in re.findall(
        r"constexpr double (k\w+) = ([\d.]+);", (NATIVE_DIR / "decoding.h").read_text())}
    assert numbers == {"kRescoringCtcWeight": DecodeOptions().rescoring_ctc_weight,
                       "kMaxWindowSeconds": windows.MAX_SECONDS,
                       "kSearchSeconds": windows.SEARCH_SECONDS}
    expected = {"kManifestFile": deployable.MANIFEST_FILE,
                "kLibraryFile": deployable.LIBRARY_FILE,
                "kWeightsFile": deployable.WEIGHTS_FILE,
                "kTokensFile": deployable.TOKENS_FILE,
                "kDeployableFormat": deployable.FORMAT,
                "kVocabularyFile": VOCABULARY_FILE,
                "kFamilySanM": SAN_M, "kFamilyWhisper": WHISPER}
    assert {key: found.get(key) for key in expected} == expected


def _floats(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in np.asarray(values).ravel())


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


# ----------------------------------------------------------------------------- Whisper's twins


@pytest.fixture(scope="module")
def whisper_tokenizer():
    from tinyasr.model.whisper.convert import ensure_whisper_model
    from tinyasr.model.whisper.tokenizer import WhisperTokenizer

    return WhisperTokenizer.load(ensure_whisper_model())


def _ids(ids: list[int]) -> str:
    return f"{len(ids)} {' '.join(map(str, ids))}"


def test_bpe_decodes_and_strips_as_the_tokenizer(twins, whisper_tokenizer, tmp_path: Path):
    """bpe.h ByteLevelVocabulary::Decode and StripSpaces against WhisperTokenizer.decode and
    str.strip: encoded texts in several scripts with special tokens between them, random single
    bytes (invalid UTF-8 of every kind: stray continuations, overlong forms, surrogates, code
    points over U+10FFFF, truncations at the end), random ids over the whole vocabulary."""
    from tinyasr.model.whisper.convert import ensure_whisper_model
    from tinyasr.model.whisper.tokenizer import VOCABULARY_FILE, byte_to_char

    tokenizer = whisper_tokenizer
    specials = tokenizer.specials
    texts = [" Place some blues in the living room.", "naïve café — déjà vu", " 日本語のテキスト",
             " thumbs 👍🏽 up", "\u3000wide\u3000", " tab\tand\nnewline \u2028", "  ", ""]
    lists = [tokenizer.encode(text) for text in texts]
    lists += [[specials.sot, specials.no_timestamps, *ids, specials.eot,
               specials.timestamp_begin + 3] for ids in lists[:3]]
    byte_id = {byte: tokenizer.ids[char] for byte, char in byte_to_char().items()}
    rng = np.random.default_rng(3)
    tricky = [b"\xed\xa0\x80", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xf0\x9f\x98", b"\xc0\xaf",
              b"\x80\xbf", b"\xe2\x82", b"a\xf8b", b"\xc3"]
    lists += [[byte_id[b] for b in data] for data in tricky]
    lists += [[byte_id[int(b)] for b in rng.integers(0x80, 0x100, int(rng.integers(1, 12)))]
              for _ in range(300)]
    lists += [[int(i) for i in rng.integers(0, len(tokenizer), 20)] for _ in range(100)]
    vocabulary = ensure_whisper_model() / VOCABULARY_FILE
    (cpp,) = twins(f"vocabulary {vocabulary} {len(tokenizer)} {specials.eot} {len(lists)} "
                   + " ".join(_ids(ids) for ids in lists) + "\n")
    decoded = [tokenizer.decode(ids) for ids in lists]
    assert cpp["texts"] == decoded
    assert cpp["stripped"] == [text.strip() for text in decoded]
    assert decoded[0].strip() == texts[0].strip() and "\ufffd" in "".join(decoded)


def test_vocabulary_problems_are_one_line_naming_the_file(twins, whisper_tokenizer,
                                                          tmp_path: Path):
    """A missing vocabulary, one of another size and one with a line that is not byte-level
    BPE: an InputError naming the file, as tinyasr-run reports it."""
    size, eot = len(whisper_tokenizer), whisper_tokenizer.specials.eot
    short = tmp_path / "short.txt"
    short.write_text("\n".join(whisper_tokenizer.vocabulary[:100]) + "\n")
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("\n".join(["a", "b", "\u4e2d", *whisper_tokenizer.vocabulary[3:]]) + "\n")
    cases = {tmp_path / "missing.txt": "missing from the deployable",
             short: f"100 tokens, the deployable's model has {size}",
             foreign: "line 3 is not a byte-level BPE token"}
    commands = "".join(f"vocabulary {path} {size} {eot} 0\n" for path in cases)
    for (path, message), cpp in zip(cases.items(), twins(commands), strict=True):
        assert cpp["error"] == f"{path}: {message}" or cpp["error"].startswith(f"{path}: "), cpp
        assert message in cpp["error"], cpp


def test_utf8_replacement_and_whitespace_are_pythons(twins):
    """bpe.h ReplaceInvalidUtf8 against bytes.decode("utf-8", errors="replace") on random byte
    strings biased to UTF-8's edges, and IsPythonSpace against str.isspace over all of Unicode."""
    rng = np.random.default_rng(4)
    edges = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED,
             0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0x41]
    strings = [bytes(int(rng.choice(edges)) if rng.random() < 0.7 else int(rng.integers(0, 256))
                     for _ in range(int(rng.integers(0, 10)))) for _ in range(2000)]
    (cpp,) = twins(f"utf8 {len(strings)} " + " ".join(_ids(list(s)) for s in strings) + "\n")
    assert cpp["hex"] == [s.decode("utf-8", errors="replace").encode().hex() for s in strings]
    (cpp,) = twins("spaces\n")
    assert cpp["spaces"] == [c for c in range(0x110000) if chr(c).isspace()]


class _ScriptedWindow:
    """A decoder state whose step returns the next rows of a script of logits."""

    def __init__(self, rows: np.ndarray):
        self.rows, self.used = rows, 0

    def step(self, tokens):
        count = tokens.shape[1]
        block = self.rows[self.used:self.used + count]
        assert len(block) == count, "the script ran out of rows"
        self.used += count
        return block.copy()[None]


class _ScriptedModel:
    """What greedy_search asks of a model: dims (the token cap) and open_window."""

    def __init__(self, rows: np.ndarray, max_new: int):
        from tinyasr.model.whisper.dims import WhisperDims

        self.dims = WhisperDims(n_text_ctx=2 * max_new, n_vocab=rows.shape[1])
        self.rows = rows

    def open_window(self, encoded):
        return _ScriptedWindow(self.rows)


def test_greedy_rules_are_the_searchs(twins):
    """whisper_decode.h GreedyWindow, Suppression and WhisperResult::IsSilence against
    model/whisper/decoding.py greedy_search, Suppression and is_silence, on scripted logits
    built to reach every rule: suppressed ids and timestamps on top, <|endoftext|> and a blank
    on top at the first step (suppress_ids_begin), <|endoftext|> later, the token cap, and
    no-speech probabilities and mean log-probabilities on both sides of the thresholds."""
    from tinyasr.model.whisper.decoding import (
        LOG_PROB_THRESHOLD,
        NO_SPEECH_THRESHOLD,
        SearchOptions,
        Suppression,
        greedy_search,
    )
    from tinyasr.model.whisper.tokenizer import SpecialTokens

    vocab, eot, sot, no_speech, no_timestamps, timestamp_begin = 64, 50, 51, 53, 55, 56
    specials = SpecialTokens(eot, sot, no_speech, no_timestamps, timestamp_begin, (52, 54))
    suppress, begin = [1, 7, 20, 51, 52, 54, 55], [3, eot]
    suppression = Suppression(vocab, specials, suppress, begin)
    options = SearchOptions()
    rng = np.random.default_rng(5)
    cases, silences = [], 0
    for trial in range(120):
        max_new = int(rng.integers(1, 9))
        rows = rng.normal(0, 1 + 4 * (trial % 3), (2 + max_new, vocab)).astype(np.float32)
        favoured = [*suppress, *begin, timestamp_begin + int(rng.integers(0, 8))]
        rows[:, favoured] += rng.uniform(0, 8, (len(rows), len(favoured))).astype(np.float32)
        if trial % 4 == 0:                       # <|endoftext|> on top somewhere
            rows[int(rng.integers(2, len(rows))), eot] += 20
        if trial % 5 == 0:                       # a confident no-speech prompt
            rows[0, no_speech] += 30
        cases.append((rows, max_new))
    commands = "".join(
        f"greedy {vocab} 2 {eot} {no_speech} {timestamp_begin} {_ids(suppress)} {_ids(begin)} "
        f"{max_new} {NO_SPEECH_THRESHOLD!r} {LOG_PROB_THRESHOLD!r} {len(rows)} {_floats(rows)}\n"
        for rows, max_new in cases)
    for (rows, max_new), cpp in zip(cases, twins(commands), strict=True):
        result = greedy_search(_ScriptedModel(rows, max_new), None, specials, suppression)
        assert cpp["tokens"] == result.tokens
        assert cpp["sum_logprob"] == pytest.approx(result.sum_logprob, abs=1e-4)
        assert cpp["no_speech_prob"] == pytest.approx(result.no_speech_prob, abs=1e-6)
        if abs(result.avg_logprob - LOG_PROB_THRESHOLD) > 1e-3:
            assert cpp["silence"] == result.is_silence(options)
            silences += cpp["silence"]
    assert 0 < silences < len(cases)


def test_whisper_windows_and_padding_are_the_hosts(twins):
    """whisper_decode.h WhisperAudio::Windows and PaddedSignal against model/whisper/
    recognizer.py window_starts and model/whisper/audio.py padded_signal: lengths around a
    hop and a window, windows of silence, of hiss at the silent peak and of speech."""
    from tinyasr.model.whisper.audio import HOP, N_FFT, PAD_SAMPLES, padded_signal
    from tinyasr.model.whisper.recognizer import SILENT_PEAK, window_starts

    rng = np.random.default_rng(6)
    size = 50                                     # frames per window: 8000 samples
    audio = np.zeros(3 * size * HOP + 777, np.float32)
    audio[size * HOP + 5:size * HOP + 900] = rng.choice([-SILENT_PEAK, SILENT_PEAK], 895)
    audio[2 * size * HOP + 100] = SILENT_PEAK + 1
    lengths = [0, 1, HOP - 1, HOP, HOP + 1, size * HOP - 1, size * HOP, size * HOP + HOP,
               len(audio)]
    commands = "".join(f"whisper_windows {HOP} {size} {SILENT_PEAK!r} {n} {_floats(audio[:n])}\n"
                       for n in lengths)
    for n, cpp in zip(lengths, twins(commands), strict=True):
        expected = window_starts(audio[:n], size)
        assert list(zip(cpp["starts"], map(bool, cpp["silent"]), strict=True)) == expected, n
    speech = rng.normal(0, 3000, 5000).astype(np.float32)
    lengths = [HOP, HOP + 1, 2 * HOP - 1, 999, 5000]
    commands = "".join(f"padded {HOP} {N_FFT // 2} {PAD_SAMPLES} {n} {_floats(speech[:n])}\n"
                       for n in lengths)
    for n, cpp in zip(lengths, twins(commands), strict=True):
        assert np.array_equal(np.array(cpp["padded"], np.float32), padded_signal(speech[:n])), n
