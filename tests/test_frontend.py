"""Our compilable fbank against kaldi-native-fbank (Kaldi's algorithm) on real speech."""

from __future__ import annotations

from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import torch

from tinyasr.model.datadir import load_wav, read_data_dir
from tinyasr.model.frontend import Fbank, num_frames


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
        # Silence bins sit at the log floor in both; speech bins agree to float32 rounding.
        np.testing.assert_allclose(ours, reference, atol=2e-3, rtol=1e-4)
