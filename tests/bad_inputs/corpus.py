"""A case of the corpus, and the shared inputs the case builders start from."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bad_inputs.files import SAMPLE, WAVS, write_data_dir
from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.network.compressed import write_compressed
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR


@dataclass(frozen=True)
class Case:
    """One command line and what it must give. `expect`: None, exit 0 (a normal result); "",
    exit 0 and every transcript empty; else exit `code` (2 unless said) with one error line
    holding this text and `names` (the file or argument at fault)."""

    command: str                   # the row of the table it counts in
    argv: tuple[str, ...]
    expect: str | None
    names: str | None = None
    code: int = 2

    @property
    def outcome(self) -> str:
        if self.expect is None or self.expect == "":
            return "normal result"
        return "one-line exit 2" if self.code == 2 else "other"


REPO = Path(__file__).resolve().parents[2]

# The table's rows, in order: every command the issue names.
COMMANDS = ["transcribe", "transcribe --lib", "evaluate", "data check", "data shard",
            "data synth", "data subset", "data augment-preview", "train", "compress", "compile",
            "board run", "rpc-test", "tune", "bench", "footprint", "report", "export", "demo"]


class Corpus:
    """The cases, by name, and the good inputs they are made from (built on first use under
    `root`): a tiny model dir, its .tac, a good wav, a data dir and a corpus of the bundled
    samples."""

    def __init__(self, root: Path, model_dir: Path, tokens: list[str]):
        self.root, self.model_dir, self.tokens = root, model_dir, tokens
        self.cases: dict[str, Case] = {}

    def add(self, name: str, case: Case) -> None:
        assert name not in self.cases, f"two cases named {name}"
        assert case.command in COMMANDS, case.command
        self.cases[name] = case

    def dir(self, *parts: str) -> Path:
        """A fresh directory under the root."""
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True)
        return path

    @cached_property
    def wavs(self) -> Path:
        """Every wav of files.WAVS, as NAME.wav."""
        path = self.dir("wavs")
        for name, make in WAVS.items():
            (path / f"{name}.wav").write_bytes(make())
        return path

    @cached_property
    def good_wav(self) -> str:
        """A real utterance, with a LIST chunk before its data (as many writers put one)."""
        return str(self.wavs / "list-before-data.wav")

    @cached_property
    def tac(self) -> Path:
        path = self.root / "tiny.tac"
        write_compressed(path, *load_model_dir(self.model_dir))
        return path

    @cached_property
    def data(self) -> Path:
        """A good data dir: two of the bundled samples."""
        utterances = read_data_dir(SAMPLES_DIR)[:2]
        return write_data_dir(self.root / "good-data",
                              "".join(f"{u.uid} {u.wav}\n" for u in utterances),
                              "".join(f"{u.uid} {u.text}\n" for u in utterances))

    @cached_property
    def corpus(self) -> Path:
        """A good corpus: train/, dev/ and test/, each the good data dir."""
        path = self.dir("good-corpus")
        for split in ("train", "dev", "test"):
            shutil.copytree(self.data, path / split)
        return path

    def corpus_with(self, name: str, split: str, bad: Path) -> Path:
        """A corpus whose `split` is the data dir `bad` and whose other splits are good (made
        once per name)."""
        path = self.root / "corpora" / name
        if path.exists():
            return path
        shutil.copytree(self.corpus, path)
        shutil.rmtree(path / split)
        if bad.exists():
            shutil.copytree(bad, path / split) if bad.is_dir() else shutil.copy(bad, path / split)
        return path

    def a_file(self, name: str) -> Path:
        """A fresh file of its own (a copy of the .tac), for a case whose output path is a
        file: a command that wrongly writes there spoils no other case's input."""
        path = self.root / "files" / name
        path.parent.mkdir(exist_ok=True)
        shutil.copy(self.tac, path)
        return path

    def data_copy(self, name: str) -> Path:
        """A copy of the good data dir of its own, for a case that may write into it."""
        path = self.root / "data-copies" / name
        shutil.copytree(self.data, path)
        return path

    @cached_property
    def sample(self) -> str:
        return str(SAMPLE)
