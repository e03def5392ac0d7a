"""`tinyasr evaluate`: rows per TTS engine and seen/unseen text, from one decoding pass, add up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinyasr.model.data.datadir import Utterance, write_data_dir
from tinyasr.model.data.synth import write_wav
from tinyasr.model.decoding.evaluate import engine_of
from tinyasr.scripts.cli import main

# (speaker, reference, what the fake recognizer hears)
UTTERANCES = [
    ("espeak_en-us_m3", "turn on the lights", "turn on the light"),
    ("espeak_en-gb_f2", "set a timer for five minutes", "set a time for five minutes"),
    ("flite_awb", "what time is it", "what time is it"),
    ("piper_joe_deep", "call mom", "tall mom now"),
    ("kokoro_jf_alpha", "play some jazz", "play sam jars"),
    ("kokoro_jm_kumo", "the bus stops right outside my house", "the bus stops outside my house"),
]


class FakeRecognizer:
    """Hears utterance i as its i-th canned hypothesis (the wav's length says which)."""

    def transcribe(self, samples: np.ndarray) -> str:
        return UTTERANCES[len(samples) // 1600 - 1][2]


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    utterances = []
    for index, (speaker, reference, _) in enumerate(UTTERANCES):
        wav = tmp_path / "wavs" / f"{speaker}-{index:06d}.wav"
        wav.parent.mkdir(exist_ok=True)
        write_wav(wav, np.zeros(1600 * (index + 1), dtype=np.int16))
        utterances.append(Utterance(wav.stem, wav, reference, speaker))
    write_data_dir(tmp_path / "test", utterances)
    train_wav = tmp_path / "wavs" / "train.wav"
    write_wav(train_wav, np.zeros(1600, dtype=np.int16))
    write_data_dir(tmp_path / "train",
                   [Utterance("espeak_x-1", train_wav, "What time is it", "espeak_x"),
                    Utterance("espeak_x-2", train_wav, "turn on the lights", "espeak_x")])
    return tmp_path / "test", tmp_path / "train"


def test_engine_is_the_speaker_prefix() -> None:
    assert engine_of(Utterance("espeak_en-us_m3-000001", Path("a.wav"), "",
                               "espeak_en-us_m3")) == "espeak"
    assert engine_of(Utterance("kokoro_jf_alpha-000002", Path("a.wav"), "", None)) == "kokoro"


def test_rows_per_engine_and_seen_text_add_up(data: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import tinyasr.model.decoding.recognizers as recognizers

    monkeypatch.setattr(recognizers, "load_recognizer", lambda *args, **kwargs: FakeRecognizer())
    test, train = data
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(test), "--train-text", str(train), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["scores"][str(test)]
    assert set(rows) == {"all", "engine=espeak", "engine=flite", "engine=kokoro", "engine=piper",
                         "seen_text", "unseen_text"}
    assert rows["engine=kokoro"]["utterances"] == 2 and rows["seen_text"]["utterances"] == 2
    for groups in ([g for g in rows if g.startswith("engine=")], ["seen_text", "unseen_text"]):
        for counts in ("cer_counts", "wer_counts"):
            for key in rows["all"][counts]:
                assert sum(rows[g][counts][key] for g in groups) == rows["all"][counts][key], \
                    (groups, counts, key)
        assert sum(rows[g]["utterances"] for g in groups) == rows["all"]["utterances"]
    assert (rows["all"]["wer_counts"]["reference_length"]
            == sum(len(u[1].split()) for u in UTTERANCES))
    assert rows["engine=flite"]["cer"] == 0.0 and rows["all"]["cer"] > 0
    assert f"{test} [engine=kokoro, 2 utt]: CER" in capsys.readouterr().out


def test_peers_are_scored_beside_the_model_on_real_speech(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    """--peer pocketsphinx --peer whisper-tiny.en: each peer's rows, in the same groups as the
    model's, on two real recordings (model/pretrained/realspeech) both peers know well: a
    LibriSpeech sentence and praatio's "Bobby ripped the ledger". Whisper tiny.en gets them
    nearly right (a word or two of 21 at most on any CPU), PocketSphinx most of the words."""
    from tinyasr.model.data.datadir import read_data_dir
    from tinyasr.model.network.pretrained_paths import COMPRESSED_MODEL, REAL_SPEECH_DIR

    chosen = [u for u in read_data_dir(REAL_SPEECH_DIR)
              if u.uid in ("librispeech-61-70968-0000", "praatio-bobby")]
    write_data_dir(tmp_path / "real", chosen)
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(tmp_path / "real"), "--model", str(COMPRESSED_MODEL),
                 "--peer", "pocketsphinx", "--peer", "whisper-tiny.en", "--peer", "pocketsphinx",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    model_rows = record["scores"][str(tmp_path / "real")]
    assert set(record["peers"]) == {"pocketsphinx", "whisper-tiny.en"}
    for name, scores in record["peers"].items():
        rows = scores[str(tmp_path / "real")]
        assert set(rows) == set(model_rows), name
        assert rows["all"]["wer_counts"]["reference_length"] == 21, name
    wer = {name: scores[str(tmp_path / "real")]["all"]["wer"]   # percent
           for name, scores in record["peers"].items()}
    assert wer["whisper-tiny.en"] <= 100 * 2 / 21 and wer["pocketsphinx"] < 50, wer
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'real'} [peer=pocketsphinx, all, 2 utt]: CER" in printed
