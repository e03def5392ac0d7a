"""compile/whisper_ggml.py: the converted tiny.en written as a GGML file is what whisper.cpp
(PyPI's pywhispercpp build) loads and transcribes as tinyasr's PyTorch Whisper does; q8_0
blocks hold what ggml's own rounding gives."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyasr.compile.whisper_ggml import MAGIC, Q8_BLOCK, q8_0, write_ggml
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.decoding.spoken_form import normalize
from tinyasr.model.network.pretrained_paths import PRETRAINED_DIR, REAL_SPEECH_DIR
from tinyasr.model.whisper.convert import ensure_whisper_model
from tinyasr.model.whisper.recognizer import WhisperRecognizer


def test_q8_0_blocks_are_a_scale_and_32_rounded_values():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3, 2 * Q8_BLOCK)).astype(np.float32)
    rows[1, :Q8_BLOCK] = 0   # an all-zero block: scale 0, values 0
    record = np.frombuffer(q8_0(rows), dtype=[("d", "<f2"), ("qs", "i1", (Q8_BLOCK,))])
    assert len(record) == 6 and record.itemsize == 34
    blocks = rows.reshape(-1, Q8_BLOCK)
    np.testing.assert_allclose(record["d"].astype(np.float32),
                               np.abs(blocks).max(1) / 127, rtol=1e-3)
    restored = record["qs"] * record["d"].astype(np.float32)[:, None]
    assert np.abs(restored - blocks).max() <= np.abs(blocks).max() / 127
    assert not record["qs"][2].any() and record["d"][2] == 0


@pytest.mark.parametrize("weight_type", ["q8_0", "f16"])
def test_whisper_cpp_transcribes_the_written_file_as_pytorch_does(weight_type: str,
                                                                  tmp_path: Path):
    """The header says tiny.en's dimensions; whisper.cpp loads every tensor and, on two real
    recordings, writes the words tinyasr's PyTorch Whisper writes (greedy, after the bench's
    one normalization)."""
    from pywhispercpp.model import Model

    path = tmp_path / "model.bin"
    size = write_ggml(ensure_whisper_model(), path, weight_type)
    header = struct.unpack("<I11i", path.read_bytes()[:48])
    assert header[0] == MAGIC and header[1:11] == (51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80)
    assert size < (45e6 if weight_type == "q8_0" else 80e6)
    model = Model(str(path), n_threads=1, redirect_whispercpp_logs_to=None,
                  print_progress=False, print_realtime=False, language="en",
                  no_timestamps=True, no_context=True, temperature=0.0, temperature_inc=0.0)
    torch.set_num_threads(1)
    reference = WhisperRecognizer.load(ensure_whisper_model())
    for utterance in read_data_dir(REAL_SPEECH_DIR)[3:5]:
        samples = load_wav(utterance.wav)
        text = "".join(s.text for s in model.transcribe((samples / 32768.0).astype(np.float32)))
        assert normalize(text) == normalize(reference.transcribe(samples)), utterance.uid


def test_bad_model_dirs_and_outputs_are_one_line(tmp_path: Path, capsys):
    """Not a Whisper dir (missing, or a SAN-M one), or a directory as the output: exit 2 with
    one line naming it, nothing written."""
    from tinyasr.compile.whisper_ggml import main

    out = tmp_path / "model.bin"
    for args in ([str(tmp_path / "missing"), str(out)],
                 [str(PRETRAINED_DIR / "shared"), str(out)],
                 [str(ensure_whisper_model()), str(tmp_path)]):
        assert main(args) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and args[0 if "model.bin" in args[1] else 1] in error
    assert list(tmp_path.iterdir()) == []
