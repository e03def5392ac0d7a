"""Reference recognizers scored beside a model (`tinyasr evaluate --peer NAME`): systems trained
on real speech, so that a table says how far a model is from what its users could run instead.

  - `whisper-tiny.en`: Whisper tiny.en (load_recognizer's), its text lowercased without
    punctuation, as our data dirs' transcripts are;
  - `pocketsphinx`: CMU PocketSphinx with the US English acoustic model, dictionary and language
    model its PyPI package ships (an optional extra: `pip install 'tinyasr[peers]'`).

A peer's hypothesis goes through spoken_form.normalize (numbers said as words, punctuation
dropped), as the real-speech bench scores every system: our transcripts spell numbers out, and
Whisper writes them as digits. What normalize cannot map still counts against a peer that writes
a written form (ordinals "23rd", times "3:30", "Mr."). Only the recognizers are used:
pocketsphinx's own test recordings are reserved for outside checks and read by nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinyasr.model.common.errors import InputError
from tinyasr.model.decoding.spoken_form import normalize

if TYPE_CHECKING:   # light to import: the command line's parser takes PEERS from here
    import numpy as np

    from tinyasr.model.decoding.evaluate import Transcriber

PEERS = ("whisper-tiny.en", "pocketsphinx")


class PocketSphinx:
    """PocketSphinx's default US English decoder; one utterance per `transcribe` call."""

    def __init__(self) -> None:
        from tinyasr.model.data.datadir import SAMPLE_RATE

        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise InputError("--peer pocketsphinx: the pocketsphinx package is not installed "
                             "(pip install 'tinyasr[peers]')") from None
        self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def transcribe(self, samples: np.ndarray) -> str:
        """int16-scale 16 kHz samples -> its words."""
        import numpy as np

        pcm = np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


class SpokenForm:
    """A recognizer's text through spoken_form.normalize."""

    def __init__(self, recognizer: Transcriber) -> None:
        self.recognizer = recognizer

    def transcribe(self, samples: np.ndarray) -> str:
        return normalize(self.recognizer.transcribe(samples))


def load_peer(name: str) -> Transcriber:
    """The peer recognizer `name` (one of PEERS), its text in spoken form."""
    if name == "pocketsphinx":
        return SpokenForm(PocketSphinx())
    if name == "whisper-tiny.en":
        from tinyasr.model.decoding.recognizers import load_recognizer

        return SpokenForm(load_recognizer(name, plain_text=True))
    raise InputError(f"--peer {name}: not a peer ({', '.join(PEERS)})")
