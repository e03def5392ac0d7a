"""On-the-fly waveform augmentation, drawn per utterance from (seed, epoch, utterance id).

Every random choice for one utterance comes from one generator seeded by the run's seed, the
epoch and a stable hash of the utterance id, so the same utterance in the same epoch is augmented
the same way in any process, worker or resumed run, and differently in the next epoch. The draws
are made when the utterance is planned (`plan`), before any audio is read: the speed factor sets
the utterance's length, which batching needs; the audio work happens later (`apply`) only in the
process that trains on the utterance.

Effects, in the order applied (each with its own probability, off by default):
    speed       resample by 0.9/1.0/1.1 (tempo and pitch together, as `sox speed`): a factor f
                leaves round(n / f) samples; band-limited (Fourier resampling)
    reverb      convolution with a simulated room impulse response: a direct path and a tail of
                Gaussian noise decaying exponentially to -60 dB at the drawn RT60
    noise       additive noise at an SNR drawn from a range: coloured noise (white, pink or
                brown: power spectrum 1/f^beta, beta 0/1/2) or a random stretch of a wav in
                `noise_dir`
    telephone   band-limiting to 300-3400 Hz (a narrow-band channel)
    gain        a gain in dB drawn from a range
    vtlp        vocal tract length perturbation: the log-mel spectrum's frequency axis warped by
                a factor near 1 (applied to the fbank, after the waveform effects)
SpecAugment stays in the model (`spec_augment` in the model config): it masks CMVN'd features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from tinyasr.model.data.datadir import SAMPLE_RATE, load_wav

INT16_MAX = 32767.0
COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


@dataclass
class AugmentConfig:
    """The recipe's "augment" section. Probabilities are per utterance."""

    speeds: list[float] = field(default_factory=list)   # e.g. [0.9, 1.0, 1.1]; [] = off
    reverb_prob: float = 0.0
    rt60: list[float] = field(default_factory=lambda: [0.2, 0.8])          # seconds
    noise_prob: float = 0.0
    snr_db: list[float] = field(default_factory=lambda: [5.0, 20.0])
    noise_dir: str | None = None      # wavs to mix in; None: generated coloured noise
    telephone_prob: float = 0.0
    gain_prob: float = 0.0
    gain_db: list[float] = field(default_factory=lambda: [-6.0, 6.0])
    vtlp_prob: float = 0.0
    vtlp_warp: list[float] = field(default_factory=lambda: [0.9, 1.1])

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        """ValueError naming the first unknown or out-of-range key."""
        if not isinstance(values, dict):
            raise ValueError(f"augment must be a JSON object, not {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown augment keys: {unknown}")
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        for name in ("reverb_prob", "noise_prob", "telephone_prob", "gain_prob", "vtlp_prob"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not 0 <= value <= 1):
                raise ValueError(f"augment.{name} must be in [0, 1], not {value!r}")
        if not isinstance(self.speeds, list) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and 0.5 <= s <= 2.0
                for s in self.speeds):
            raise ValueError(f"augment.speeds must be a list of factors in [0.5, 2], "
                             f"not {self.speeds!r}")
        for name, low, high in (("rt60", 0.05, 3.0), ("snr_db", -20.0, 80.0),
                                ("gain_db", -40.0, 40.0), ("vtlp_warp", 0.7, 1.3)):
            pair = getattr(self, name)
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in pair)
                    or not low <= pair[0] <= pair[1] <= high):
                raise ValueError(f"augment.{name} must be [low, high] within [{low}, {high}], "
                                 f"not {pair!r}")
        if self.noise_dir is not None:
            if not isinstance(self.noise_dir, str):
                raise ValueError(f"augment.noise_dir must be a directory path, not "
                                 f"{self.noise_dir!r}")
            directory = Path(self.noise_dir)
            if not directory.is_dir() or not any(directory.glob("*.wav")):
                raise ValueError(f"augment.noise_dir: {directory} is not a directory of wavs")

    @property
    def enabled(self) -> bool:
        return bool(self.speeds) or any(getattr(self, name) > 0 for name in (
            "reverb_prob", "noise_prob", "telephone_prob", "gain_prob", "vtlp_prob"))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AugmentPlan:
    """Every random draw for one utterance in one epoch; `None`/1.0 means the effect is off."""

    speed: float = 1.0
    rt60: float | None = None
    noise_snr_db: float | None = None
    noise_colour: float = 0.0         # beta of 1/f^beta
    noise_file: int = -1              # index into the noise dir's sorted wavs; -1: generated
    telephone: bool = False
    gain_db: float | None = None
    vtlp_warp: float | None = None
    seed: int = 0                     # for the noise and reverb samples themselves

    def length(self, samples: int) -> int:
        """Samples after the speed change."""
        return samples if self.speed == 1.0 else max(1, round(samples / self.speed))


def utterance_seed(seed: int, epoch: int, uid: str) -> list[int]:
    """Entropy for numpy's generator: the same on every machine and Python (no hash())."""
    digest = hashlib.blake2b(uid.encode(), digest_size=8).digest()
    return [seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, int.from_bytes(digest, "little")]


def plan(config: AugmentConfig, seed: int, epoch: int, uid: str,
         noise_files: int = 0) -> AugmentPlan:
    """The draws for `uid` in `epoch`. Every draw is made whether or not its effect fires, so
    turning one effect on or off leaves the others' draws unchanged."""
    rng = np.random.default_rng(utterance_seed(seed, epoch, uid))
    speed_index = int(rng.integers(0, max(1, len(config.speeds))))
    draws = rng.random(5)
    rt60 = float(rng.uniform(config.rt60[0], config.rt60[1]))     # pairs: AugmentConfig checks
    snr = float(rng.uniform(config.snr_db[0], config.snr_db[1]))
    colour = float(list(COLOURS.values())[int(rng.integers(0, len(COLOURS)))])
    noise_file = int(rng.integers(0, max(1, noise_files)))
    gain = float(rng.uniform(config.gain_db[0], config.gain_db[1]))
    warp = float(rng.uniform(config.vtlp_warp[0], config.vtlp_warp[1]))
    samples_seed = int(rng.integers(0, 2 ** 31))
    return AugmentPlan(
        speed=float(config.speeds[speed_index]) if config.speeds else 1.0,
        rt60=rt60 if draws[0] < config.reverb_prob else None,
        noise_snr_db=snr if draws[1] < config.noise_prob else None,
        noise_colour=colour, noise_file=noise_file if noise_files else -1,
        telephone=bool(draws[2] < config.telephone_prob),
        gain_db=gain if draws[3] < config.gain_prob else None,
        vtlp_warp=warp if draws[4] < config.vtlp_prob else None,
        seed=samples_seed)


def resample(samples: np.ndarray, length: int) -> np.ndarray:
    """Band-limited resampling to `length` samples by truncating or zero-padding the spectrum;
    played at the original rate it is sped up by len(samples) / length."""
    n = len(samples)
    if length == n:
        return samples.astype(np.float32)
    spectrum = np.fft.rfft(samples.astype(np.float64))
    bins = length // 2 + 1
    if bins <= len(spectrum):
        spectrum = spectrum[:bins].copy()
        if length % 2 == 0:
            spectrum[-1] = spectrum[-1].real   # the new Nyquist bin of a real signal is real
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - len(spectrum), complex)])
    return (np.fft.irfft(spectrum, length) * (length / n)).astype(np.float32)


def room_impulse_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A statistical RIR: a unit direct path, then after a few ms a Gaussian tail whose energy
    decays by 60 dB over `rt60` seconds (Polack's model of a diffuse late field)."""
    length = int(min(rt60, 1.0) * SAMPLE_RATE)
    delay = int(0.004 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)   # ln(1000) = 6.9078
    tail[:delay] = 0.0
    response = np.concatenate([[1.0], 0.3 * tail / max(np.sqrt(np.sum(tail ** 2)), 1e-9)])
    return response.astype(np.float64)


def reverberate(samples: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """`samples` convolved with a simulated RIR, trimmed to the input's length and rescaled to
    the input's RMS (reverb changes the sound, not the level)."""
    response = room_impulse_response(rt60, rng)
    size = len(samples) + len(response) - 1
    fft_size = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(samples, fft_size) * np.fft.rfft(response, fft_size),
                       fft_size)[:len(samples)]
    return wet * (rms(samples) / max(rms(wet), 1e-9))


def coloured_noise(length: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f^beta (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1.0 / SAMPLE_RATE)
    frequencies[0] = frequencies[1] if length > 1 else 1.0
    spectrum *= frequencies ** (-beta / 2)
    return np.fft.irfft(spectrum, length)


def noise_from_file(wav: Path, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of `length` samples of a noise wav, looped if it is shorter."""
    noise = load_wav(wav).astype(np.float64)
    if len(noise) == 0:
        return np.zeros(length)
    repeats = -(-(length + len(noise)) // len(noise))
    looped = np.tile(noise, repeats)
    start = int(rng.integers(0, len(noise)))
    return looped[start:start + length]


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def add_noise(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`samples` + `noise` scaled so that signal power / noise power is `snr_db` exactly."""
    signal_power, noise_power = rms(samples) ** 2, rms(noise) ** 2
    if signal_power == 0.0 or noise_power == 0.0:
        return samples
    return samples + noise * np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))


def band_limit(samples: np.ndarray, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    """Zeroes the spectrum outside [low, high] Hz, with 50 Hz raised-cosine edges (a brick wall
    would ring)."""
    spectrum = np.fft.rfft(samples)
    frequencies = np.fft.rfftfreq(len(samples), 1.0 / SAMPLE_RATE)
    edge = 50.0
    gain = np.clip(np.minimum((frequencies - (low - edge)) / edge,
                              ((high + edge) - frequencies) / edge), 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spectrum * gain, len(samples))


def apply(plan_: AugmentPlan, samples: np.ndarray, noise_files: Sequence[Path] = ()
          ) -> np.ndarray:
    """The planned waveform effects on int16-scale float samples; clipped to the int16 range
    as a recording would be."""
    rng = np.random.default_rng(plan_.seed)
    audio = samples.astype(np.float64)
    if plan_.speed != 1.0:
        audio = resample(audio, plan_.length(len(audio))).astype(np.float64)
    if plan_.rt60 is not None:
        audio = reverberate(audio, plan_.rt60, rng)
    if plan_.noise_snr_db is not None:
        if plan_.noise_file >= 0 and noise_files:
            noise = noise_from_file(noise_files[plan_.noise_file], len(audio), rng)
        else:
            noise = coloured_noise(len(audio), plan_.noise_colour, rng)
        audio = add_noise(audio, noise, plan_.noise_snr_db)
    if plan_.telephone:
        audio = band_limit(audio)
    if plan_.gain_db is not None:
        audio = audio * 10 ** (plan_.gain_db / 20)
    return np.clip(audio, -INT16_MAX - 1, INT16_MAX).astype(np.float32)


def warp_frequencies(fbank: torch.Tensor, warp: float) -> torch.Tensor:
    """VTLP on log-mel features (frames, bins): output bin i reads the input at i * warp,
    linearly interpolated, the last bin repeated past the top; the log-mel axis stands in for
    the linear one, since a formant shift of a few percent is close to a constant shift in mel."""
    bins = fbank.shape[-1]
    positions = torch.arange(bins, dtype=torch.float32) * warp
    positions = positions.clamp(max=bins - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=bins - 1)
    fraction = positions - low
    return fbank[..., low] * (1 - fraction) + fbank[..., high] * fraction


def noise_wavs(config: AugmentConfig) -> list[Path]:
    return sorted(Path(config.noise_dir).glob("*.wav")) if config.noise_dir else []
