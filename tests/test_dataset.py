"""Streamed training data: augmentation, shards, the split across ranks and workers, bad audio."""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.framing import num_frames
from tinyasr.model.network.frontend import Fbank
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training.dataset import augment
from tinyasr.model.training.dataset.batching import batched, shuffled
from tinyasr.model.training.dataset.sources import Corpus
from tinyasr.model.training.dataset.stream import SpeechStream, StreamConfig
from tinyasr.scripts.cli import main as tinyasr

EVERYTHING = augment.AugmentConfig.from_dict({
    "speeds": [0.9, 1.0, 1.1], "reverb_prob": 0.5, "noise_prob": 0.5, "telephone_prob": 0.5,
    "gain_prob": 0.5, "vtlp_prob": 0.5})


def tone(frequency: float, seconds: float = 1.0, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / 16000)[spectrum.argmax()])


def test_augmentation_is_a_function_of_seed_epoch_and_utterance():
    samples = load_wav(read_data_dir(SAMPLES_DIR)[0].wav)
    first = augment.plan(EVERYTHING, 3, 1, "utt-a")
    assert first == augment.plan(EVERYTHING, 3, 1, "utt-a")
    assert np.array_equal(augment.apply(first, samples), augment.apply(first, samples))
    others = {augment.plan(EVERYTHING, 3, epoch, "utt-a") for epoch in range(2, 8)}
    others |= {augment.plan(EVERYTHING, 4, 1, "utt-a"), augment.plan(EVERYTHING, 3, 1, "utt-b")}
    assert first not in others
    # Turning one effect off leaves the other draws as they were.
    no_reverb = augment.AugmentConfig.from_dict({**EVERYTHING.to_dict(), "reverb_prob": 0.0})
    assert augment.plan(no_reverb, 3, 1, "utt-a").speed == first.speed


def test_speed_1_1_shortens_by_1_over_1_1_and_raises_pitch_by_1_1():
    source = tone(440.0, seconds=2.0)
    plan = augment.AugmentPlan(speed=1.1)
    fast = augment.apply(plan, source)
    assert len(fast) == round(len(source) / 1.1) == plan.length(len(source))
    # One FFT bin of the 1.82 s output is 0.55 Hz; 440 * 1.1 = 484 lies within one bin.
    assert abs(dominant_frequency(fast) - 484.0) <= 0.6
    slow = augment.apply(augment.AugmentPlan(speed=0.9), source)
    assert len(slow) == round(len(source) / 0.9)


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("colour", [0.0, 1.0, 2.0])
def test_noise_is_mixed_at_the_requested_snr(snr: float, colour: float):
    clean = tone(300.0, amplitude=3000.0)
    noisy = augment.apply(augment.AugmentPlan(noise_snr_db=snr, noise_colour=colour, seed=5),
                          clean)
    noise = noisy.astype(np.float64) - clean
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2))
    # Exact by construction up to the float32 output rounding (no clipping at these levels).
    assert abs(measured - snr) < 0.01


def test_noise_from_a_noise_dir(tmp_path: Path):
    from tinyasr.model.data.synth import write_wav
    write_wav(tmp_path / "hum.wav", np.rint(tone(50.0, seconds=0.3, amplitude=2000.0)))
    config = augment.AugmentConfig.from_dict({"noise_prob": 1.0, "snr_db": [6.0, 6.0],
                                              "noise_dir": str(tmp_path)})
    files = augment.noise_wavs(config)
    plan = augment.plan(config, 0, 0, "u", len(files))
    assert plan.noise_file == 0 and plan.noise_snr_db == 6.0
    clean = tone(1000.0, amplitude=3000.0)
    noise = augment.apply(plan, clean, files).astype(np.float64) - clean
    assert abs(10 * np.log10(np.mean(clean ** 2.0) / np.mean(noise ** 2)) - 6.0) < 0.01
    assert abs(dominant_frequency(noise) - 50.0) <= 1.0


def test_telephone_band_and_reverb_and_gain():
    mixed = tone(100.0) + tone(1000.0) + tone(6000.0)
    phone = augment.apply(augment.AugmentPlan(telephone=True), mixed)
    spectrum = np.abs(np.fft.rfft(phone))
    def at(hz: float) -> float:  # 1 s of audio: bin k is k Hz
        return spectrum[int(hz)]

    assert at(100) < 1e-3 * at(1000) and at(6000) < 1e-3 * at(1000)
    wet = augment.apply(augment.AugmentPlan(rt60=0.5, seed=1), mixed)
    assert len(wet) == len(mixed) and not np.allclose(wet, mixed)
    assert abs(augment.rms(wet) / augment.rms(mixed) - 1) < 1e-3   # same level, other sound
    louder = augment.apply(augment.AugmentPlan(gain_db=6.0), tone(440.0, amplitude=1000.0))
    assert abs(20 * np.log10(augment.rms(louder) / augment.rms(tone(440.0, amplitude=1000.0)))
               - 6.0) < 0.01


def test_bad_augment_config_names_the_key():
    with pytest.raises(ValueError, match="augment.noise_prob"):
        augment.AugmentConfig.from_dict({"noise_prob": 2})
    with pytest.raises(ValueError, match="unknown augment keys"):
        augment.AugmentConfig.from_dict({"echo": 1})


def test_shuffle_and_sort_buffers_keep_every_item_and_bound_batches():
    rng = random.Random(0)
    lengths = [rng.randint(50, 400) for _ in range(300)]
    items = list(shuffled(range(300), 32, random.Random(1)))
    assert sorted(items) == list(range(300)) and items != list(range(300))
    batches = list(batched(items, lambda i: lengths[i], 64, 1000, random.Random(2)))
    assert sorted(i for b in batches for i in b) == list(range(300))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 1000


def make_stream(corpus: Corpus, tokenizer: Tokenizer, rank: int = 0, world: int = 1,
                config: augment.AugmentConfig | None = None) -> SpeechStream:
    return SpeechStream(corpus, tokenizer, Fbank(), StreamConfig(seed=1, batch_frames=800,
                                                                 shuffle_buffer=4, sort_buffer=6),
                        config or augment.AugmentConfig(), rank=rank, world=world)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_texts(u.text for u in read_data_dir(SAMPLES_DIR))


def test_shards_stream_the_same_utterances_and_features(tmp_path: Path, tokenizer: Tokenizer):
    assert tinyasr(["data", "shard", str(SAMPLES_DIR), str(tmp_path / "shards"),
                    "--per-shard", "5"]) == 0
    assert (tmp_path / "shards" / "shards.list").read_text().split() == [
        "shard_000000.tar", "shard_000001.tar", "shard_000002.tar"]
    fbank = Fbank()
    expected = {u.uid: fbank(torch.from_numpy(load_wav(u.wav))[None])[0]
                for u in read_data_dir(SAMPLES_DIR)}
    for corpus in (Corpus.open(SAMPLES_DIR), Corpus.open(tmp_path / "shards")):
        assert len(corpus) == 12
        seen = {}
        for item in make_stream(corpus, tokenizer):
            features, lengths, targets, _ = item.batch
            for row, uid in enumerate(item.uids):
                seen[uid] = features[row, :lengths[row]]
        assert seen.keys() == expected.keys()
        for uid, features in seen.items():
            assert torch.equal(features, expected[uid])


def test_a_seeded_sample_streams_just_its_utterances_from_a_dir_or_shards(tmp_path: Path,
                                                                          tokenizer: Tokenizer):
    """`compress prune --train-utterances N`: the same N ids from a data dir and its shards;
    a problem with an utterance outside the sample is not the sample's."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLES_DIR, data)
    assert tinyasr(["data", "shard", str(SAMPLES_DIR), str(tmp_path / "shards"),
                    "--per-shard", "5"]) == 0
    samples = [Corpus.open(path).sample(5, seed=3) for path in (data, tmp_path / "shards")]
    assert samples[0].ids() == sorted(samples[0].ids()) and len(samples[0]) == 5
    assert set(samples[0].ids()) == set(samples[1].ids())
    assert Corpus.open(data).sample(12, seed=3).ids() == Corpus.open(data).ids()
    left_out = sorted(set(Corpus.open(data).ids()) - set(samples[0].ids()))[0]
    wav = next(line.split()[1] for line in (data / "wav.scp").read_text().splitlines()
               if line.split()[0] == left_out)
    (data / wav).write_bytes(b"torn")
    for sample in samples:
        items = list(make_stream(sample, tokenizer))
        assert sorted(uid for item in items for uid in item.uids) == sorted(samples[0].ids())
        assert not [line for item in items for line in item.bad]


def test_ranks_and_workers_split_one_global_batch_sequence(tokenizer: Tokenizer):
    corpus = Corpus.open(SAMPLES_DIR)
    whole = {item.index: item.uids for item in make_stream(corpus, tokenizer, config=EVERYTHING)}
    assert len(whole) >= 3
    for world in (2, 3):
        parts = {}
        for rank in range(world):
            for item in make_stream(corpus, tokenizer, rank, world, EVERYTHING):
                assert (item.index % world) == rank and item.index not in parts
                parts[item.index] = item.uids
        assert parts == whole
    # Within a rank, DataLoader workers take turns; the union is the rank's share.
    loader = torch.utils.data.DataLoader(make_stream(corpus, tokenizer, 0, 2, EVERYTHING),
                                         batch_size=None, num_workers=2)
    indices = [item.index for item in loader]
    assert indices == sorted(i for i in whole if i % 2 == 0)
    # Resuming from global batch 3 with one process yields batches 3, 4, ... unchanged.
    stream = make_stream(corpus, tokenizer, config=EVERYTHING)
    stream.set_epoch(0, start=3)
    assert {item.index: item.uids for item in stream} == {i: u for i, u in whole.items() if i >= 3}


def test_an_unreadable_utterance_is_named_skipped_and_counted(tmp_path: Path,
                                                                tokenizer: Tokenizer):
    data = tmp_path / "data"
    shutil.copytree(SAMPLES_DIR, data)
    lines = (data / "wav.scp").read_text().splitlines()
    torn = data / lines[4].split()[1]
    torn.write_bytes(torn.read_bytes()[:30])                 # header torn
    short = data / lines[7].split()[1]
    with wave.open(str(short), "rb") as reader:
        frames = reader.getnframes()
    short.write_bytes(short.read_bytes()[:-2 * (frames // 2)])  # data truncated: header lies
    corpus = Corpus.open(data)
    items = list(make_stream(corpus, tokenizer))
    bad = [line for item in items for line in item.bad]
    uids = [uid for item in items for uid in item.uids]
    assert len(uids) == 10 and len(bad) == 2
    assert any(line.startswith(f"{data / 'wav.scp'}:5: ") for line in bad), bad
    assert any(line.startswith(f"{data / 'wav.scp'}:8: ") for line in bad), bad


def test_augment_preview_writes_wavs(tmp_path: Path):
    out = tmp_path / "preview"
    assert tinyasr(["data", "augment-preview", str(SAMPLES_DIR), str(out), "--count", "3"]) == 0
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 3
    effects = (out / "effects.txt").read_text().splitlines()
    assert len(effects) == 3 and all(json.loads(line.split(" ", 1)[1]) is not None
                                     for line in effects)
    for wav in wavs:
        assert len(load_wav(wav)) > 16000 * 0.5
    # Again with the same seed: the same files.
    again = tmp_path / "again"
    assert tinyasr(["data", "augment-preview", str(SAMPLES_DIR), str(again), "--count", "3"]) == 0
    assert all(w.read_bytes() == (again / w.name).read_bytes() for w in wavs)


def test_frames_of_a_planned_utterance_follow_its_speed():
    plan = augment.AugmentPlan(speed=1.1)
    assert num_frames(plan.length(16000)) == num_frames(round(16000 / 1.1))


def test_a_shard_member_that_is_not_a_file_is_a_bad_utterance(tmp_path: Path):
    """A .txt or .wav entry that is a directory in the tar (extractfile gives None) is named
    as a bad utterance; it used to end the stream with an AttributeError."""
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "shards.list").write_text("shard_000000.tar\n")
    (shards / "text").write_text("a hello\nb world\n")
    with tarfile.open(shards / "shard_000000.tar", "w") as tar:
        text = tarfile.TarInfo("a.txt")
        text.size = 5
        tar.addfile(text, io.BytesIO(b"hello"))
        for name in ("a.wav", "b.txt"):
            directory = tarfile.TarInfo(name)
            directory.type = tarfile.DIRTYPE
            tar.addfile(directory)
    entries = list(Corpus.open(shards).entries(seed=0, epoch=0))
    assert [type(e).__name__ for e in entries] == ["BadUtterance", "BadUtterance"]
    assert "a.wav" in str(entries[0]) and "b.txt" in str(entries[1])
