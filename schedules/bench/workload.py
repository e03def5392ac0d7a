"""What every row is given alike: per length, the same waveform and the encoder FLOPs (counted
once, on the fp32 PyTorch graph); and the reference n-best that every row's decoder rescores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tinyasr.compile.graphs import EncoderGraph
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.decoding.search import Hypothesis, ctc_prefix_beam_search
from tinyasr.model.network.framing import SAMPLE_RATE, encoder_frames, samples_read
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.model.network.san_m import AsrModel

REFERENCE_SECONDS = 5.0            # the table's fixed utterance length


def bench_waveforms(lengths: Sequence[float]) -> dict[float, np.ndarray]:
    """For each length in seconds, the bundled samples concatenated (repeated as needed) and cut
    to exactly the samples the encoder reads for that length, so every runtime sees the same."""
    pool = np.concatenate([load_wav(u.wav) for u in read_data_dir(SAMPLES_DIR)])
    waveforms = {}
    for seconds in lengths:
        needed = samples_read(encoder_frames(int(seconds * SAMPLE_RATE)))
        waveforms[seconds] = np.resize(pool, needed).astype(np.float32)
    return waveforms


def encoder_flops(model: AsrModel, waveform: np.ndarray) -> int:
    """FLOPs of one encode call (matmuls and convolutions) on the fp32 PyTorch graph."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        EncoderGraph(model)(torch.from_numpy(waveform)[None])
    return int(counter.get_total_flops())


def reference_nbest(model: AsrModel, waveform: np.ndarray, beam: int) -> list[Hypothesis]:
    """The fp32 PyTorch model's CTC n-best for `waveform`: the hypotheses every row rescores
    for the rescoring column, so that each row's decoder does the same work."""
    with torch.no_grad():
        log_probs, _ = model.ctc_log_probs(torch.from_numpy(waveform)[None])
    return [hypothesis for hypothesis, _ in ctc_prefix_beam_search(log_probs[0].numpy(), beam)]
