"""Bad input through every command: one line naming the file or argument, exit code 2, never a
traceback; degenerate but valid input (silence, audio shorter than one frame, a wav with extra
chunks, a data dir with CRLF lines) gives a normal result.

The corpus is built by tests/bad_inputs/ (one module of case builders per command) in tmp dirs,
from the bundled samples and a tiny random model; a case is data, and one generic check judges
every run. The runs go through the real CLI in a few fresh interpreters, once per module
(`results`): each case under an alarm (a hang is reported as one), and a batch that dies (a
crash) goes on from the case after the one it died in. A compiled deployable is only needed for
the short-audio cases of `transcribe --lib` (marked slow); the deployable corruption cases use
a stand-in deployable whose files are checked before any is loaded. The wav reader, the .tac
reader and the weights-file reader are also fuzzed in process with seeded mutations: each must
give a result or an InputError, nothing else.

`test_corpus_table` prints the count by command (run with -s to see it).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import tvm
from bad_inputs.corpus import COMMANDS, REPO, Case, Corpus
from bad_inputs.files import (
    SAMPLE,
    WAV_OUTCOMES,
    WAVS,
    drop_checksums,
    make_deployable,
    mutate_json,
    mutated_wavs,
    mutations,
    tac_header,
    write_tac,
)

from tinyasr.compile.deployable import (
    LIBRARY_FILE,
    TOKENS_FILE,
    WEIGHTS_FILE,
    check_deployable_files,
    read_manifest,
    read_weights_index,
)
from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import load_wav, read_wav_format
from tinyasr.model.network.compressed import load_compressed, read_compressed, write_compressed
from tinyasr.model.network.model_dir import save_model_dir
from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL

# in this order: later builders use what earlier ones made (bad data dirs, odd data dirs)
BUILDERS = [importlib.import_module(f"bad_inputs.{name}") for name in (
    "transcribe", "models", "deployables", "data", "evaluate", "train", "compress", "compile",
    "tune", "measure", "other")]


def build_corpus(root: Path, model_dir: Path, tokens: list[str]) -> dict[str, Case]:
    corpus = Corpus(root, model_dir, tokens)
    for builder in BUILDERS:
        builder.add_cases(corpus)
    return corpus.cases


ENV = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
CASE_SECONDS = 120   # one case longer than this is a hang


def run_cli(argv: tuple[str, ...], timeout: float = CASE_SECONDS
            ) -> subprocess.CompletedProcess:
    """`python -m tinyasr.scripts.cli ARGV` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tinyasr.scripts.cli", *argv], cwd=REPO,
                          capture_output=True, text=True, env=ENV, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


# Runs many command lines in one fresh interpreter, each through the CLI's main() as
# `python -m tinyasr.scripts.cli` does (an exception main() lets through is printed as the
# interpreter prints it, exit code 1): the corpus then costs one start-up of torch and TVM per
# batch instead of one per case. Each result is one marked line on the real stdout as soon as
# the case ends (a child process of a command may write there too), so a batch that dies
# still says how far it got. test_the_real_entry_point_agrees runs a few cases one process
# each to show the two agree.
MARK = "@@bad-input-result@@ "
DRIVER = f"""
import contextlib, io, json, signal, sys, traceback
from tinyasr.scripts.cli import main

class Hang(BaseException):
    pass

def alarm(signum, frame):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    hung = False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        signal.alarm({CASE_SECONDS})
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except Hang:
            code, hung = 1, True
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            signal.alarm(0)
    line = json.dumps([code, out.getvalue(), err.getvalue(), hung])
    sys.__stdout__.write("{MARK}" + line + "\\n")
    sys.__stdout__.flush()
"""


@dataclass
class Run:
    """One case's run: exit code, stdout, stderr, and whether it hung or crashed."""

    returncode: int
    stdout: str
    stderr: str
    hung: bool = False
    crashed: bool = False


def run_batch(argvs: list[tuple[str, ...]]) -> list[Run]:
    """Every command line's run; a batch that dies is restarted after the case that killed it,
    which counts as a crash."""
    runs: list[Run] = []
    while len(runs) < len(argvs):
        left, before = argvs[len(runs):], len(runs)
        done = subprocess.run([sys.executable, "-c", DRIVER], cwd=REPO, input=json.dumps(left),
                              capture_output=True, text=True, env=ENV,
                              timeout=CASE_SECONDS * len(left) + 60, check=False)
        for line in done.stdout.splitlines():
            if line.startswith(MARK):
                code, out, err, hung = json.loads(line[len(MARK):])
                runs.append(Run(code, out, err, hung))
        if len(runs) < len(argvs) and (done.returncode != 0 or len(runs) == before):
            runs.append(Run(done.returncode, "", done.stderr[-2000:], crashed=True))
    return runs


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


BATCHES = 4   # fresh interpreters, two at a time


@pytest.fixture(scope="module")
def results(corpus: dict[str, Case]) -> dict[str, Run]:
    """Every case's CLI run, in a few fresh interpreters, two side by side. A case that writes
    only depends on what the builders made, never on another case's run."""
    names = list(corpus)
    batches = [names[index::BATCHES] for index in range(BATCHES)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = pool.map(run_batch, ([corpus[name].argv for name in batch] for batch in batches))
        return {name: result for batch, done in zip(batches, runs, strict=True)
                for name, result in zip(batch, done, strict=True)}


def problem(case: Case, result: Run) -> str | None:
    """What is wrong with a case's run, or None."""
    if result.crashed:
        return f"crash (exit {result.returncode}): {result.stderr[-800:]}"
    if result.hung:
        return f"hang: no result after {CASE_SECONDS} s"
    if "Traceback" in result.stderr:
        return f"traceback: {result.stderr[-800:]}"
    if case.expect is None or case.expect == "":
        if result.returncode != 0 or "error" in result.stderr:
            return f"exit {result.returncode}: {result.stderr[-400:]}"
        if case.expect == "" and not all(line.endswith("\t")
                                         for line in result.stdout.splitlines() or ["?"]):
            return f"expected an empty transcript, got {result.stdout!r}"
        return None
    if result.returncode != case.code:
        return f"exit {result.returncode}, expected {case.code}: {result.stderr[-400:]}"
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


def verdict(case: Case, result: Run) -> str:
    """The table's column a run counts in."""
    if result.crashed:
        return "crashes"
    if result.hung:
        return "hangs"
    if "Traceback" in result.stderr:
        return "tracebacks"
    return "clean" if problem(case, result) is None else "wrong"


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_is_one_line_and_degenerate_input_a_normal_result(
        command: str, corpus: dict[str, Case], results: dict[str, Run]) -> None:
    cases = {name: case for name, case in corpus.items() if case.command == command}
    assert cases
    problems = {name: problem(case, results[name]) for name, case in cases.items()}
    assert {name: text for name, text in problems.items() if text} == {}


REAL_ENTRY_POINT_CASES = ["transcribe-zero-samples", "transcribe-beam-0",
                          "transcribe-tac-bit-flip", "transcribe-lib-weights-name-length-huge",
                          "evaluate-json-is-a-directory", "data-check-odd-byte-count",
                          "compress-prune-block-divides-nothing", "train-recipe-epochs-0"]


@pytest.mark.parametrize("name", REAL_ENTRY_POINT_CASES)
def test_the_real_entry_point_agrees(name: str, corpus: dict[str, Case],
                                     results: dict[str, Run]) -> None:
    alone = run_cli(corpus[name].argv)
    assert problem(corpus[name], Run(alone.returncode, alone.stdout, alone.stderr)) is None
    batched = results[name]
    assert (alone.returncode, alone.stdout, alone.stderr) == (
        batched.returncode, batched.stdout, batched.stderr)


COLUMNS = ["cases", "one-line exit 2", "normal result", "other", "clean", "tracebacks",
           "crashes", "hangs", "wrong"]


def corpus_table(corpus: dict[str, Case], results: dict[str, Run]) -> str:
    """The count by command, as a Markdown table: what each case expects, then how it ran."""
    rows = []
    totals = dict.fromkeys(COLUMNS, 0)
    for command in COMMANDS:
        counts = dict.fromkeys(COLUMNS, 0)
        for name, case in corpus.items():
            if case.command == command:
                counts["cases"] += 1
                counts[case.outcome] += 1
                counts[verdict(case, results[name])] += 1
        rows.append(f"| {command} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |")
        totals = {c: totals[c] + counts[c] for c in COLUMNS}
    return "\n".join([
        "| command | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|", *rows,
        "| all | " + " | ".join(str(totals[c]) for c in COLUMNS) + " |"])


def test_corpus_table(corpus: dict[str, Case], results: dict[str, Run]) -> None:
    """Every command the issue names has cases, at least 300 in all; the table is printed."""
    assert {case.command for case in corpus.values()} == set(COMMANDS)
    assert len(corpus) >= 300
    print(f"\nbad-input corpus, {len(corpus)} cases:\n{corpus_table(corpus, results)}")


# --- fuzzing the readers in process --------------------------------------------------------------

def test_wav_reader_gives_samples_or_an_input_error_on_300_mutations(tmp_path: Path) -> None:
    outcomes = {"samples": 0, "InputError": 0}
    for path in mutated_wavs(tmp_path):
        try:
            samples = load_wav(path)
            found = read_wav_format(path)
            assert len(samples) == found.samples and found.data_offset + found.data_bytes \
                <= path.stat().st_size
            outcomes["samples"] += 1
        except InputError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            outcomes["InputError"] += 1
    assert min(outcomes.values()) > 20, outcomes   # both outcomes well exercised


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
    stored = next(iter(read_weights_index(out / WEIGHTS_FILE)))
    (out / WEIGHTS_FILE).write_bytes((out / WEIGHTS_FILE).read_bytes().replace(
        stored.encode(), b"x" * len(stored), 1))
    result = run_cli(("transcribe", "--lib", str(out), str(SAMPLE)))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"{out / WEIGHTS_FILE}: sha256 differs" in result.stderr


@pytest.mark.slow
def test_board_run_transcribes_degenerate_wavs(tmp_path: Path, model_dir: Path, capfd) -> None:
    """tinyasr-run under qemu (rpi4) on every wav the fast corpus expects a result for: one
    line each, empty for audio shorter than one frame (the bad wavs are refused before the
    board runs, in the fast corpus)."""
    from tinyasr.scripts.cli import main

    out = tmp_path / "rpi4"
    assert main(["compile", str(model_dir), "--target", "rpi4", "--out", str(out),
                 "--untuned"]) == 0
    names = [name for name, outcome in WAV_OUTCOMES.items() if outcome in (None, "")]
    wavs = []
    for name in names:
        wavs.append(tmp_path / f"{name}.wav")
        wavs[-1].write_bytes(WAVS[name]())
    capfd.readouterr()
    code = main(["board", "run", "rpi4", str(out), *map(str, wavs)])
    printed, err = capfd.readouterr()
    assert code == 0 and "Traceback" not in err, err
    lines = printed.splitlines()
    assert len(lines) == len(names), printed
    assert all(line == "" for name, line in zip(names, lines, strict=True)
               if WAV_OUTCOMES[name] == ""), lines


def test_parameter_bound_counts_what_the_model_holds(tiny_random_model) -> None:
    from tinyasr.model.network.model_dir import load_model_dir
    from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL

    for model in (tiny_random_model[0], load_model_dir(DEFAULT_MODEL)[0]):
        assert model.config.parameter_count() == sum(
            tensor.numel() for tensor in model.state_dict().values())
