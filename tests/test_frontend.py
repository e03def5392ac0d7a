"""Our compilable fbank against kaldi-native-fbank (Kaldi's algorithm) on real speech."""

from __future__ import annotations

from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import torch

from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.framing import num_frames
from tinyasr.model.network.frontend import Fbank


def kaldi_fbank(samples: np.ndarray) -> np.ndarray:
    options = knf.FbankOptions()
    options.frame_opts.dither = 0
    options.frame_opts.samp_freq = 16000
    options.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(options)
    fbank.accept_waveform(16000, samples.tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def test_fbank_matches_kaldi_on_speech(tiny_corpus: Path):
    for utterance in read_data_dir(tiny_corpus / "test")[:3]:
        samples = load_wav(utterance.wav)
        reference = kaldi_fbank(samples)
        ours = Fbank()(torch.from_numpy(samples)[None])[0].numpy()
        assert ours.shape == reference.shape == (num_frames(len(samples)), 80)
        # Compared as power, against each frame's loudest bin: a float32 power spectrum is
        # exact to about 1e-7 of its frame's energy, not of each bin's, so a bin 1e-10 below
        # its frame's peak (a band the voice leaves empty) can be 0.7% off, 0.007 in the log
        # (seen on an espeak voice). A wrong filter or window moves the loud bins, by far more
        # than 0.1%.
        power, expected = np.exp(ours), np.exp(reference)
        peak = expected.max(axis=1, keepdims=True)
        assert np.all(np.abs(power - expected) <= 1e-3 * expected + 1e-6 * peak)
