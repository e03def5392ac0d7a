"""tinyasr-run, the C++ transcriber, under qemu-user: the host's transcripts, without Python.

A shipped model is compiled for an aarch64 board (rpi4) and a riscv64 board (visionfive2); the
board's own tinyasr-run (cross-built with its runtime) must print exactly what the PyTorch
reference prints for bundled samples.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tinyasr.compile.deployable import (
    LIBRARY_FILE,
    MANIFEST_FILE,
    TOKENS_FILE,
    VERSION,
    WEIGHTS_FILE,
    build_deployable,
    file_sha256,
)
from tinyasr.compile.parity import texts_agree
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
from tinyasr.model.decoding.recognizer import Recognizer
from tinyasr.model.network.model_dir import save_model_dir
from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL, DEFAULT_MODEL, SAMPLES_DIR
from tinyasr.scripts.cli import main
from tinyasr.targets.boards import get_board
from tinyasr.targets.farm import emulator_prefix
from tinyasr.targets.host.runner import CompiledRecognizer
from tinyasr.targets.native_build import build_runtime, describe
from tinyasr.targets.static_transcriber import static_linker

SAMPLES = 3                 # qemu is slow: the shortest few utterances
# The int8 model on rpi4 (aarch64) and on the RVV k230 (riscv64 vector int8 code: it needs qemu
# 8.1 or newer, which `make setup` installs), the fp32 one on the VisionFive 2 (riscv64 scalar).
BOARD_MODELS = {"rpi4": COMPRESSED_MODEL, "k230": COMPRESSED_MODEL,
                "visionfive2": DEFAULT_MODEL}
# what every Debian-family board OS has (apt depends on them)
OS_LIBRARIES = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "libstdc++.so.6",
                "libgcc_s.so.1", "ld-linux-aarch64.so.1"}
TIMING_LINE = re.compile(r"audio [\d.]+ s, encode [\d.]+ ms, decode [\d.]+ ms, RTF [\d.]+")


@pytest.fixture(scope="module")
def wavs() -> list[Path]:
    by_length = sorted((utterance.wav for utterance in read_data_dir(SAMPLES_DIR)),
                       key=lambda wav: wav.stat().st_size)
    return by_length[:SAMPLES]


@pytest.fixture(scope="module")
def deployable(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The board's shipped model (BOARD_MODELS) compiled for it, once per board; rpi4's with its
    static transcriber (compile --static) as well."""
    root = tmp_path_factory.mktemp("deploy")

    def compiled_for(board: str) -> Path:
        if not (root / board).is_dir():
            static = static_linker(get_board(board)) if board == "rpi4" else None
            build_deployable(BOARD_MODELS[board], get_board(board), root / board, static=static)
        return root / board

    return compiled_for


def reference_transcripts(board: str, wavs: list[Path], options: DecodeOptions) -> list[str]:
    recognizer = Recognizer.load(BOARD_MODELS[board], options)
    return [recognizer.transcribe(load_wav(wav)) for wav in wavs]


def run_on_board(board: str, deployable: Path, options: DecodeOptions, wavs: list[Path],
                 capfd) -> str:
    """`tinyasr board run` (tinyasr-run under qemu): its stdout, after checking its stderr."""
    code = main(["board", "run", board, str(deployable), "--mode", options.mode.value,
                 "--beam", str(options.beam), *map(str, wavs)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert re.search(r"code \d+ bytes, weights \d+ bytes, load [\d.]+ ms", err), err
    assert len(TIMING_LINE.findall(err)) == len(wavs), err
    return out


@pytest.mark.parametrize("board", list(BOARD_MODELS))
def test_board_prints_the_reference_transcripts(deployable, wavs: list[Path], board: str, capfd):
    """fp32: exactly the reference's text; int8: within compile/parity.py's margin, since an
    int8 rounding of the board's float sums may flip against this machine's."""
    int8 = BOARD_MODELS[board] == COMPRESSED_MODEL
    out = run_on_board(board, deployable(board), DecodeOptions(), wavs, capfd)
    printed = out.splitlines()
    expected = reference_transcripts(board, wavs, DecodeOptions())
    assert len(printed) == len(expected)
    assert all(texts_agree(got, want, int8) for got, want in zip(printed, expected, strict=True)), \
        (printed, expected)


def test_the_static_transcriber_prints_what_the_shared_one_prints(deployable, wavs: list[Path],
                                                                  capfd):
    """tinyasr-run-static (the runtime linked in, -Os, LTO, unreachable code dropped) on the
    emulated rpi4: the same text as tinyasr-run with its libraries, in one smaller file that
    needs only the board OS's C and C++ libraries."""
    shared = run_on_board("rpi4", deployable("rpi4"), DecodeOptions(), wavs, capfd)
    code = main(["board", "run", "rpi4", "--static", str(deployable("rpi4")), *map(str, wavs)])
    out, err = capfd.readouterr()
    assert code == 0 and out == shared, err
    assert len(TIMING_LINE.findall(err)) == len(wavs), err
    runtime = build_runtime(get_board("rpi4"))
    header = subprocess.run([shutil.which("aarch64-linux-gnu-objdump") or "objdump", "-p",
                             str(runtime.static_transcriber)], capture_output=True, text=True,
                            check=True).stdout
    assert set(re.findall(r"NEEDED\s+(\S+)", header)) <= OS_LIBRARIES, header
    sizes = runtime.manifest["sizes"]
    assert sizes["bin/tinyasr-run-static"] < 0.8 * (
        sizes["bin/tinyasr-run"] + sizes["lib/libtvm_runtime.so"] + sizes["lib/libtvm_ffi.so"])


def test_compile_static_links_one_program_that_prints_what_tinyasr_run_prints(
        deployable, wavs: list[Path], tmp_path: Path, capfd):
    """`compile --static` for rpi4: tinyasr-transcribe, the transcriber with the model's code
    (TVM's system library) and the deployable's files linked in, run under qemu alone in a
    folder: tinyasr-run's text for the deployable, from one file that needs only the board OS's
    libraries and is no bigger than the files it replaces (but for aarch64's 64 KiB segment
    alignment). Bad input: no wav, or a missing one, is one line and exit code 2."""
    rpi4 = get_board("rpi4")
    shared = run_on_board("rpi4", deployable("rpi4"), DecodeOptions(), wavs, capfd)
    entry = json.loads((deployable("rpi4") / MANIFEST_FILE).read_text())["static_transcriber"]
    program = Path(shutil.copy2(deployable("rpi4") / entry["file"], tmp_path))
    assert entry["bytes"] == program.stat().st_size and entry["sha256"] == file_sha256(program)
    run = subprocess.run([*emulator_prefix(rpi4), str(program), *map(str, wavs)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0 and run.stdout == shared, run.stderr
    loaded = re.search(r"code (\d+) bytes, weights (\d+) bytes", run.stderr)
    assert loaded is not None and int(loaded.group(2)) == (
        deployable("rpi4") / WEIGHTS_FILE).stat().st_size, run.stderr
    assert 0 < int(loaded.group(1)) < program.stat().st_size - int(loaded.group(2))
    header = subprocess.run([shutil.which("aarch64-linux-gnu-objdump") or "objdump", "-p",
                             str(program)], capture_output=True, text=True, check=True).stdout
    assert set(re.findall(r"NEEDED\s+(\S+)", header)) <= OS_LIBRARIES, header
    replaced = build_runtime(rpi4).static_transcriber.stat().st_size + sum(
        (deployable("rpi4") / name).stat().st_size
        for name in (LIBRARY_FILE, WEIGHTS_FILE, TOKENS_FILE, MANIFEST_FILE))
    assert program.stat().st_size <= replaced + (64 << 10)
    for argv, message in [((), "expected at least one wav"),
                          ((str(tmp_path / "gone.wav"),), f"{tmp_path / 'gone.wav'}: ")]:
        result = subprocess.run([*emulator_prefix(rpi4), str(program), *argv],
                                capture_output=True, text=True, timeout=300)
        last = result.stderr.splitlines()[-1]   # a wav is read once the model is loaded
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert last.startswith(f"tinyasr-run: error: {message}"), result.stderr


def test_a_vector_deployable_is_refused_where_the_cpu_lacks_the_extension(deployable, wavs,
                                                                         capfd):
    """A k230 (RVV) deployable on a VisionFive 2 (rv64gc): one line naming the extension, from
    the host's check and from tinyasr-run's own (the CPU's AT_HWCAP), never SIGILL."""
    k230 = deployable("k230")
    assert main(["board", "run", "visionfive2", str(k230), str(wavs[0])]) == 2
    assert "lacks" in capfd.readouterr().err
    visionfive2 = get_board("visionfive2")
    run = subprocess.run([*emulator_prefix(visionfive2),
                          str(build_runtime(visionfive2).transcriber), str(k230), str(wavs[0])],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "v (RVV 1.0)" in run.stderr, run.stderr


def test_decoding_options_reach_the_board(deployable, wavs: list[Path], capfd):
    for options in [DecodeOptions(DecodeMode.CTC_PREFIX_BEAM, beam=4),
                    DecodeOptions(DecodeMode.CTC_GREEDY)]:
        out = run_on_board("rpi4", deployable("rpi4"), options, wavs[:1], capfd)
        (printed,), (expected,) = out.splitlines(), reference_transcripts("rpi4", wavs[:1],
                                                                           options)
        assert texts_agree(printed, expected, int8=True), (options, printed, expected)


@pytest.mark.slow  # builds the host's runtime (minutes, once)
def test_search_port_matches_python_on_a_random_model(tiny_random_model, tmp_path: Path, capfd):
    """The decoding port alone: one host deployable decoded by Python (CompiledRecognizer:
    model/decoding/search.py, prefix_tree.py) and by tinyasr-run (targets/native/src/
    ctc_search.h, decoding.h), on a random model whose long garbage output keeps every beam busy.
    Each twin alone: tests/test_native_twins.py."""
    save_model_dir(*tiny_random_model, tmp_path / "model")
    build_deployable(tmp_path / "model", get_board("host"), tmp_path / "host")
    wavs = [utterance.wav for utterance in read_data_dir(SAMPLES_DIR)]
    for options in [DecodeOptions(), DecodeOptions(beam=3),
                    DecodeOptions(DecodeMode.CTC_PREFIX_BEAM, beam=1),
                    DecodeOptions(DecodeMode.CTC_GREEDY)]:
        out = run_on_board("host", tmp_path / "host", options, wavs, capfd)
        recognizer = CompiledRecognizer.load(tmp_path / "host", options)
        assert out.splitlines() == [recognizer.transcribe(load_wav(wav)) for wav in wavs], options


def test_transcriber_is_built_with_the_runtime():
    runtime = build_runtime(get_board("rpi4"))
    assert runtime.transcriber.is_file()
    assert "bin/tinyasr-run" in runtime.manifest["sizes"] and "bin/tinyasr-run" in describe(runtime)


def _write_wav(path: Path, rate: int) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.zeros(rate // 10, dtype="<i2").tobytes())
    return path


def test_bad_input_is_one_line_naming_the_file(deployable, wavs: list[Path], tmp_path: Path):
    """Run on the board directly: `board run` checks the manifest itself before starting qemu."""
    rpi4 = get_board("rpi4")
    transcriber = [*emulator_prefix(rpi4), str(build_runtime(rpi4).transcriber)]
    broken = tmp_path / "broken"
    shutil.copytree(deployable("rpi4"), broken)
    (broken / WEIGHTS_FILE).write_bytes(b"not weights")
    no_history = tmp_path / "no_history"
    shutil.copytree(deployable("rpi4"), no_history)
    manifest = json.loads((no_history / MANIFEST_FILE).read_text())
    (no_history / MANIFEST_FILE).write_text(json.dumps({**manifest, "decoder_history": 0}))
    short_bound, old, no_tables = (tmp_path / "short_bound", tmp_path / "old",
                                   tmp_path / "no_tables")
    encode = manifest["functions"]["encode"]
    renamed = {**encode, "tables": {**encode["tables"], "function": "encode_nope"}}
    for path, edit in ((short_bound, {"audio": {**manifest["audio"], "max_frames": 100}}),
                       (old, {"version": VERSION - 1}),
                       (no_tables, {"functions": {**manifest["functions"], "encode": renamed}})):
        shutil.copytree(deployable("rpi4"), path)
        (path / MANIFEST_FILE).write_text(json.dumps({**manifest, **edit}))
    wav_8k = _write_wav(tmp_path / "8k.wav", 8000)
    cases = {
        (str(tmp_path / "nothing"), str(wavs[0])):
            f"{tmp_path / 'nothing'}: not a tinyasr deployable (no readable manifest.json)",
        (str(broken), str(wavs[0])): f"{broken / WEIGHTS_FILE}: not a TVM weights file (bad magic)",
        (str(no_history), str(wavs[0])):
            f"{no_history / MANIFEST_FILE}: decoder_history 0 is not in [1, 1024]",
        (str(short_bound), str(wavs[0])):
            f"{short_bound / MANIFEST_FILE}: max_frames 100 is under the 748 frames of a 30 s "
            "window",
        (str(old), str(wavs[0])):
            f"{old / MANIFEST_FILE}: deployable version {VERSION - 1}, this tinyasr-run reads "
            f"version {VERSION}: compile it again",
        (str(no_tables), str(wavs[0])):
            f"{no_tables / LIBRARY_FILE}: the model library has no function encode_nope",
        (str(deployable("rpi4")), str(wav_8k)):
            f"{wav_8k}: sample rate 8000 Hz, expected 16000 Hz "
            "(resample with `sox IN -r 16000 OUT`)",
    }
    for args, message in cases.items():
        result = subprocess.run([*transcriber, *args], capture_output=True, text=True)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert last.startswith(f"tinyasr-run: error: {message}"), result.stderr


def test_board_run_refuses_a_deployable_of_another_architecture(deployable, wavs, capfd):
    assert main(["board", "run", "k230", str(deployable("rpi4")), str(wavs[0])]) == 2
    assert "built for rpi4 (aarch64), not for k230 (riscv64)" in capfd.readouterr().err


# ----------------------------------------------------------------------------- Whisper


def _compile_whisper(board: str, out: Path, int8: bool = False, static: bool = False) -> Path:
    """whisper-tiny.en compiled for `board` (untuned: no database is shipped for Whisper)."""
    from tinyasr.compile.whisper_deployable import build_whisper_deployable
    from tinyasr.model.whisper.convert import ensure_whisper_model

    build_whisper_deployable(ensure_whisper_model(), get_board(board), out, untuned=True,
                             int8=int8, static=static_linker(get_board(board)) if static else None)
    return out


@pytest.fixture(scope="session")
def whisper_rpi4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """whisper-tiny.en compiled for rpi4 in fp32, once per session (~30 s here)."""
    return _compile_whisper("rpi4", tmp_path_factory.mktemp("whisper") / "rpi4")


@pytest.fixture(scope="session")
def whisper_recognizer():
    """The PyTorch greedy Whisper: the reference every Whisper deployable is held to."""
    from tinyasr.model.whisper.convert import ensure_whisper_model
    from tinyasr.model.whisper.recognizer import WhisperRecognizer

    return WhisperRecognizer.load(ensure_whisper_model())


@pytest.mark.slow  # emulated: the 30 s encoder window alone takes minutes under qemu
def test_board_runs_whisper_as_pytorch(whisper_rpi4: Path, whisper_recognizer, wavs: list[Path],
                                       tmp_path: Path, capfd):
    """`tinyasr board run rpi4` on the fp32 Whisper deployable (tinyasr-run under qemu-aarch64):
    PyTorch's greedy transcript of a bundled sample, and "" for silence (gated before encoding)."""
    silence = _write_wav(tmp_path / "silence.wav", 16000)
    code = main(["board", "run", "rpi4", str(whisper_rpi4), str(wavs[0]), str(silence)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert len(TIMING_LINE.findall(err)) == 2, err
    expected = whisper_recognizer.transcribe(load_wav(wavs[0]))
    assert expected and out.split("\n") == [expected, "", ""], (out, expected)


@pytest.fixture(scope="session")
def whisper_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """whisper-tiny.en fp32 for the host, with its static transcriber (compile --static)."""
    return _compile_whisper("host", tmp_path_factory.mktemp("whisper") / "host", static=True)


@pytest.mark.slow  # a host runtime and Whisper build (minutes when not cached)
def test_host_tinyasr_run_prints_the_python_runners_whisper_transcripts(whisper_host: Path,
                                                                        tmp_path: Path, capfd):
    """The same deployable through tinyasr-run and through targets/host/whisper_runner.py (the
    Python search that equals PyTorch's, tests/test_whisper_compile.py): the same text for every
    bundled sample, real speech, and 70 s of audio (three windows: speech, silence, speech)."""
    from tinyasr.targets.host.whisper_runner import load_compiled_whisper

    realspeech = Path(__file__).resolve().parent.parent / "model" / "pretrained" / "realspeech"
    utterances = [*read_data_dir(SAMPLES_DIR), *read_data_dir(realspeech)[:4]]
    first, second = load_wav(utterances[-1].wav), load_wav(utterances[-2].wav)
    long = np.zeros(70 * 16000, np.float32)
    long[:len(first)] = first
    long[60 * 16000:60 * 16000 + len(second)] = second
    long_wav = tmp_path / "long.wav"
    with wave.open(str(long_wav), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(long.astype("<i2").tobytes())
    wavs = [u.wav for u in utterances] + [long_wav]
    code = main(["board", "run", "host", str(whisper_host), *map(str, wavs)])
    out, err = capfd.readouterr()
    assert code == 0, err
    runner = load_compiled_whisper(whisper_host)
    assert out.split("\n")[:-1] == [runner.transcribe(load_wav(wav)) for wav in wavs]
    # the static transcriber (compile --static): the vocabulary and weights linked in too
    static = subprocess.run([str(whisper_host / "tinyasr-transcribe"), *map(str, wavs)],
                            capture_output=True, text=True, timeout=600)
    assert static.returncode == 0 and static.stdout == out, static.stderr


def test_whisper_bad_input_is_one_line(deployable, wavs: list[Path], tmp_path: Path):
    """The Whisper path's manifest checks, on manifests alone (tinyasr-run reads the manifest
    before any other file): a SAN-M deployable labelled Whisper, an unknown family, and a
    Whisper manifest whose token cap overruns the KV cache or whose vocabulary is missing."""
    rpi4 = get_board("rpi4")
    transcriber = [*emulator_prefix(rpi4), str(build_runtime(rpi4).transcriber)]
    sanm = json.loads((deployable("rpi4") / MANIFEST_FILE).read_text())

    def with_manifest(name: str, manifest: dict) -> Path:
        path = tmp_path / name
        shutil.copytree(deployable("rpi4"), path)
        (path / MANIFEST_FILE).write_text(json.dumps(manifest))
        return path

    labelled = with_manifest("labelled", {**sanm, "family": "whisper"})
    foreign = with_manifest("foreign", {**sanm, "family": "wav2vec"})
    cases = {
        labelled: f"{labelled / MANIFEST_FILE}: not a Whisper deployable manifest (",
        foreign: f"{foreign / MANIFEST_FILE}: model family \"wav2vec\", this tinyasr-run runs "
                 "san-m and whisper",
    }
    for path, message in cases.items():
        result = subprocess.run([*transcriber, str(path), str(wavs[0])], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"tinyasr-run: error: {message}"), result.stderr


@pytest.mark.slow  # compiles whisper-tiny.en for rpi4 (~30 s), shared with the run above
def test_whisper_deployable_bad_input_is_one_line(whisper_rpi4: Path, wavs: list[Path],
                                                  tmp_path: Path, capfd):
    """A Whisper deployable given to the SAN-M path (relabelled), SAN-M's options, a token cap
    that overruns the KV cache, a missing or foreign vocabulary: one line naming the file, exit
    2, from tinyasr-run itself and, where the host checks first, from `board run`."""
    from tinyasr.model.whisper.tokenizer import VOCABULARY_FILE

    rpi4 = get_board("rpi4")
    transcriber = [*emulator_prefix(rpi4), str(build_runtime(rpi4).transcriber)]
    manifest = json.loads((whisper_rpi4 / MANIFEST_FILE).read_text())

    def variant(name: str, manifest_changes: dict | None = None,
                vocabulary: str | None = None) -> Path:
        path = tmp_path / name
        path.mkdir()
        for file in whisper_rpi4.iterdir():     # links: the weights are 150 MB
            (path / file.name).symlink_to(file)
        if manifest_changes is not None:
            (path / MANIFEST_FILE).unlink()
            (path / MANIFEST_FILE).write_text(json.dumps({**manifest, **manifest_changes}))
        if vocabulary is not None:
            (path / VOCABULARY_FILE).unlink()
            if vocabulary:
                (path / VOCABULARY_FILE).write_text(vocabulary)
        return path

    relabelled = variant("relabelled", {"family": "san-m"})
    overrun = variant("overrun", {"decoder": {**manifest["decoder"], "max_new_tokens": 447}})
    no_vocabulary = variant("no_vocabulary", vocabulary="")
    short_vocabulary = variant("short_vocabulary", vocabulary="a\nb\n")
    cases = {
        (str(relabelled),): f"{relabelled / MANIFEST_FILE}: not a SAN-M deployable manifest (",
        ("--beam", "4", str(whisper_rpi4)):
            f"{whisper_rpi4}: a Whisper deployable decodes greedily; --beam and --mode are for "
            "SAN-M deployables",
        (str(overrun),): f"{overrun / MANIFEST_FILE}: decoder.max_new_tokens 447 does not fit "
                         "the 448-slot cache after the prompt",
        (str(no_vocabulary),): f"{no_vocabulary / VOCABULARY_FILE}: missing from the deployable",
        (str(short_vocabulary),): f"{short_vocabulary / VOCABULARY_FILE}: 2 tokens, the "
                                  "deployable's model has 51864",
    }
    for args, message in cases.items():
        result = subprocess.run([*transcriber, *args, str(wavs[0])], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"tinyasr-run: error: {message}"), result.stderr
    # the host's own checks, before qemu starts
    for args, message in {("--mode", "ctc_greedy"): "decodes greedily",
                          (): "corrupt deployable manifest (decoder.max_new_tokens"}.items():
        target = whisper_rpi4 if args else overrun
        assert main(["board", "run", "rpi4", *args, str(target), str(wavs[0])]) == 2
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert main(["board", "run", "rpi4", str(relabelled), str(wavs[0])]) == 2
    assert "corrupt deployable manifest (sos_eos" in capfd.readouterr().err


@pytest.mark.slow  # a host runtime build when not cached, then 300 runs of tinyasr-run (~1 min)
def test_host_tinyasr_run_survives_300_mutated_deployables(tmp_path: Path, wavs: list[Path]):
    """tinyasr-run's own deployable readers (manifest, weights.bin: it checks no sha256, so
    every mutation reaches the parsers) on seeded mutations of the shipped int8 model's
    deployable: a transcript (exit 0) or one line naming a file (exit 2), never a crash, a hang
    or a traceback-like dump."""
    from bad_inputs.files import mutate_json, mutations

    runtime = build_runtime(get_board("host"), log=lambda _: None)
    good = tmp_path / "good"
    build_deployable(COMPRESSED_MODEL, get_board("host"), good)
    manifest = json.loads((good / MANIFEST_FILE).read_text())
    rng = random.Random(5)
    cases = [(WEIGHTS_FILE, data) for data in mutations(
        (good / WEIGHTS_FILE).read_bytes(), 200, seed=6, header_bytes=4096)]
    cases += [(MANIFEST_FILE, json.dumps(mutate_json(manifest, rng)).encode())
              for _ in range(100)]
    outcomes = {"text": 0, "error": 0}
    case_dir = tmp_path / "case"
    shutil.copytree(good, case_dir)
    for index, (name, data) in enumerate(cases):
        for restored in (WEIGHTS_FILE, MANIFEST_FILE):
            shutil.copyfile(good / restored, case_dir / restored)
        (case_dir / name).write_bytes(data)
        run = subprocess.run([str(runtime.transcriber), str(case_dir), str(wavs[0])],
                             capture_output=True, text=True, errors="replace", timeout=120)
        assert run.returncode in (0, 2), (index, name, run.returncode, run.stderr[-2000:])
        if run.returncode == 2:
            assert run.stderr.count("\n") == 1 and str(case_dir) in run.stderr, (
                index, name, run.stderr[-2000:])
            outcomes["error"] += 1
        else:
            outcomes["text"] += 1
    assert min(outcomes.values()) > 5, outcomes
