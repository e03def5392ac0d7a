"""The TTS corpus: a real small synthesis run, voice- and sentence-disjoint splits, the held-out
engine, determinism, atomic output."""

from __future__ import annotations

import json
import random
import wave
from pathlib import Path

import pytest

from tinyasr.model.data import synth
from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.data.prompts import (
    ALPHABET_PATTERN,
    clock_words,
    general_sentences,
    make_prompt,
    number_words,
    ordinal_words,
    year_words,
)
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.scripts.cli import main

SIZES = {"train": 3000, "dev": 300, "test": 300, "test_unseen_engine": 100}
SMALL = {"train": 4, "dev": 2, "test": 2, "test_unseen_engine": 1}


def speakers_by_split(jobs: list[synth.Job]) -> dict[str, set[str]]:
    return {split: {job.voice.speaker for job in jobs if job.split == split}
            for split in synth.SPLITS}


def test_plan_holds_out_voices_of_every_engine() -> None:
    jobs = synth.plan_corpus(SIZES, seed=1)
    speakers = speakers_by_split(jobs)
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    for split in ("train", "dev", "test"):
        assert {job.voice.engine for job in jobs if job.split == split} == set(synth.ENGINE_SHARE)
    assert len({job.uid for job in jobs}) == len(jobs)


def test_held_out_engine_is_only_in_its_test_split() -> None:
    jobs = synth.plan_corpus(SIZES, seed=1)
    assert synth.HELD_OUT_ENGINE not in synth.ENGINE_SHARE
    held_out = [job for job in jobs if job.split == "test_unseen_engine"]
    assert {job.voice.engine for job in held_out} == {synth.HELD_OUT_ENGINE}
    assert all(job.voice.engine != synth.HELD_OUT_ENGINE
               for job in jobs if job.split != "test_unseen_engine")
    assert len({job.voice.name for job in held_out}) == len(synth.KOKORO_VOICES)


def test_splits_share_no_sentence() -> None:
    jobs = synth.plan_corpus(SIZES, seed=2)
    texts = {split: {" ".join(job.text.split()) for job in jobs if job.split == split}
             for split in synth.SPLITS}
    for i, a in enumerate(synth.SPLITS):
        for b in synth.SPLITS[i + 1:]:
            assert not texts[a] & texts[b], (a, b)
    assert all(synth.text_split(job.text, 2) == job.split for job in jobs)
    assert len(texts["dev"]) > 100 and len(texts["train"]) > 1500  # varied, not a handful repeated
    # the split of a sentence depends on its normalized text and the seed, not on the draw
    assert synth.text_split("Turn  ON the lights", 2) == synth.text_split("turn on the lights", 2)


def test_every_espeak_variant_is_used_once() -> None:
    used = [variant for split in synth.SPLITS for variant in synth.ESPEAK_VARIANTS[split]]
    assert sorted(used) == sorted(synth.ESPEAK_ALL_VARIANTS) and len(used) == len(set(used)) > 100


def test_kokoro_phonemes_are_in_its_vocabulary() -> None:
    _, vocab, _ = synth._kokoro()
    for text in ("turn off the kitchen lights", "she was born in nineteen eighty four",
                 "what's the weather in tokyo"):
        phonemes = synth.kokoro_phonemes(text)
        assert phonemes and all(symbol in vocab for symbol in phonemes), phonemes


def test_plan_is_deterministic_in_the_seed() -> None:
    assert synth.plan_corpus(SIZES, seed=3) == synth.plan_corpus(SIZES, seed=3)
    assert synth.plan_corpus(SIZES, seed=3) != synth.plan_corpus(SIZES, seed=4)


def test_dev_and_test_splits_do_not_depend_on_the_train_size() -> None:
    small = synth.plan_corpus(SIZES, seed=3)
    big = synth.plan_corpus(SIZES | {"train": 5000}, seed=3)
    assert ([job for job in small if job.split != "train"]
            == [job for job in big if job.split != "train"])
    assert small[:SIZES["train"]] == big[:SIZES["train"]]


def test_prompts_are_lowercase_words() -> None:
    assert number_words(0) == "zero"
    assert number_words(72) == "seventy two"
    assert number_words(312) == "three hundred and twelve"
    assert number_words(4005) == "four thousand five"
    assert clock_words(7, 5) == "seven oh five"
    assert clock_words(6, 30) == "half past six"
    assert ordinal_words(21) == "twenty first" and ordinal_words(30) == "thirtieth"
    assert year_words(1984) == "nineteen eighty four"
    assert year_words(2009) == "two thousand and nine"
    assert year_words(1905) == "nineteen oh five" and year_words(2025) == "twenty twenty five"
    rng, sentences = random.Random(0), general_sentences()
    prompts = [make_prompt(rng, sentences) for _ in range(2000)]
    assert all(ALPHABET_PATTERN.fullmatch(prompt) for prompt in prompts)
    assert len(set(prompts)) > 500


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 9-utterance corpus made through the CLI."""
    out = tmp_path_factory.mktemp("synth") / "corpus"
    assert main(["data", "synth", str(out), "--train", "4", "--dev", "2", "--test", "2",
                 "--test-unseen-engine", "1", "--seed", "5", "--jobs", "2"]) == 0
    return out


def test_small_real_synthesis(corpus: Path) -> None:
    speakers = {}
    for split in synth.SPLITS:
        utterances = read_data_dir(corpus / split)  # validates 16 kHz mono 16-bit and every table
        assert len(utterances) == SMALL[split]
        speakers[split] = {u.speaker for u in utterances}
        for utterance in utterances:
            assert utterance.wav.parent == corpus / "wavs"
            assert ALPHABET_PATTERN.fullmatch(utterance.text)
            with wave.open(str(utterance.wav)) as reader:
                assert 0.5 < reader.getnframes() / reader.getframerate() < 8
        wav_scp = (corpus / split / "wav.scp").read_text()
        wav_paths = [line.split()[1] for line in wav_scp.splitlines()]
        assert all(path.startswith("../wavs/") for path in wav_paths)
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    assert not speakers["dev"] & speakers["test"]
    held_out_engines = {speaker.split("_")[0] for speaker in speakers["test_unseen_engine"]}
    assert held_out_engines == {synth.HELD_OUT_ENGINE}
    record = json.loads((corpus / "synth.json").read_text())
    assert record["held_out_engine"] == synth.HELD_OUT_ENGINE
    assert record["sentences_shared_between_splits"] == 0
    assert record["engines"]["test_unseen_engine"] == {synth.HELD_OUT_ENGINE: 1}
    assert synth.HELD_OUT_ENGINE not in record["engines"]["train"] | record["engines"]["dev"]
    assert record["sizes"] == SMALL


def test_existing_output_is_refused_and_kept(corpus: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", str(corpus), "--train", "1", "--dev", "0", "--test", "0"]) == 2
    assert capsys.readouterr().err == (f"tinyasr: error: {corpus}: already exists "
                                       "(pass --force to replace it)\n")
    assert len(read_data_dir(corpus / "train")) == 4


def test_subset_copies_a_standalone_data_dir(corpus: Path, tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    assert main(["data", "subset", str(corpus / "train"), str(sample), "--count", "2",
                 "--max-seconds", "10"]) == 0
    utterances = read_data_dir(sample)
    assert len(utterances) == 2 and all(u.wav.parent == sample / "wavs" for u in utterances)
    originals = {u.uid: u for u in read_data_dir(corpus / "train")}
    for utterance in utterances:
        assert utterance.wav.read_bytes() == originals[utterance.uid].wav.read_bytes()
        original = originals[utterance.uid]
        assert (utterance.text, utterance.speaker) == (original.text, original.speaker)


def test_failed_synthesis_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(job: synth.Job, wav_dir: Path) -> float:
        raise RuntimeError("engine crashed")

    monkeypatch.setattr(synth, "render", fail)  # worker processes are forked, so they see it too
    with pytest.raises(RuntimeError, match="engine crashed"):
        synth.synthesize_corpus(tmp_path / "corpus", {"train": 2, "dev": 0, "test": 0}, seed=0,
                                jobs=1, force=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argument", ["--jobs=0", "--train=-1", "--test-unseen-engine=-1"])
def test_bad_arguments(tmp_path: Path, argument: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", str(tmp_path / "c"), argument]) == 2
    assert capsys.readouterr().err.startswith(
        f"tinyasr: error: {argument.split('=')[0]}: must be at least")
    assert not (tmp_path / "c").exists()


def test_bundled_samples_are_held_out_test_voices() -> None:
    utterances = read_data_dir(SAMPLES_DIR)
    test_voices = {voice.speaker
                   for voices in synth.split_voices()["test"].values() for voice in voices}
    assert len(utterances) >= 10
    assert {u.speaker for u in utterances} <= test_voices
    assert sum(u.wav.stat().st_size for u in utterances) < 1_500_000
