"""Long audio in windows (model/network/windows.py): bounded memory, short audio unchanged."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tinyasr.model.data.datadir import load_wav
from tinyasr.model.network import windows
from tinyasr.model.network.framing import SAMPLE_RATE
from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL, SAMPLES_DIR


def _sample_wavs():
    return [SAMPLES_DIR / line.split()[1]
            for line in (SAMPLES_DIR / "wav.scp").read_text().splitlines() if line.strip()]


def test_window_bounds_cut_in_the_quietest_place():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 3000, 70 * SAMPLE_RATE).astype(np.float32)
    pause = 27 * SAMPLE_RATE
    audio[pause:pause + SAMPLE_RATE // 5] = 0          # a 200 ms pause near the first boundary
    bounds = windows.window_bounds(audio)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))       # contiguous, in order
    assert all(0 < end - start <= windows.MAX_SECONDS * SAMPLE_RATE for start, end in bounds)
    assert pause <= bounds[0][1] < pause + SAMPLE_RATE // 5
    assert len(bounds) == 3
    assert windows.window_bounds(audio[:30 * SAMPLE_RATE]) == [(0, 30 * SAMPLE_RATE)]


def test_texts_joined_and_short_audio_passed_whole():
    calls = []

    def fake(samples):
        calls.append(len(samples))
        return "" if len(calls) == 2 else f"w{len(calls)}"

    audio = np.ones(65 * SAMPLE_RATE, np.float32)
    assert windows.transcribe_in_windows(audio, fake) == "w1 w3"
    assert sum(calls) == len(audio)
    short = np.ones(10 * SAMPLE_RATE, np.float32)
    assert windows.transcribe_in_windows(short, lambda s: "x" if s is short else "no") == "x"


def test_bundled_samples_decode_as_one_window():
    """Every bundled sample is under the maximum, so its transcript is the unwindowed one."""
    from tinyasr.model.decoding.recognizer import Recognizer

    recognizer = Recognizer.load(DEFAULT_MODEL)
    for wav in _sample_wavs():
        samples = load_wav(wav)
        assert len(windows.window_bounds(samples)) == 1
        assert recognizer.transcribe(samples) == recognizer._transcribe_window(samples)


LONG = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch
    from tinyasr.model.network import windows
    from tinyasr.model.data.datadir import load_wav
    from tinyasr.model.decoding.recognizer import Recognizer
    clips = [load_wav(w) for w in sys.argv[2:]]
    audio = np.concatenate(clips * 100)[: int(float(sys.argv[1]) * 16000)]
    torch.set_num_threads(1)
    recognizer = Recognizer.load({model!r})
    text = recognizer.transcribe(audio)
    parts = [recognizer._transcribe_window(audio[a:b]) for a, b in windows.window_bounds(audio)]
    hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
    print(json.dumps({{"text": text, "parts": parts, "hwm_mib": int(hwm) / 1024}}))
""")


def test_two_minutes_in_bounded_memory():
    """120 s of bundled samples end to end: 5 windows; peak RSS (VmHWM) measured 326 MiB on an
    Intel Xeon, against 1368 MiB for the same audio unwindowed (and 342 vs 7266 MiB at 600 s)."""
    import json

    wavs = [str(w) for w in _sample_wavs()]
    result = subprocess.run([sys.executable, "-c", LONG.format(model=str(DEFAULT_MODEL)), "120",
                             *wavs], capture_output=True, text=True, timeout=600, check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(out["parts"]) == 5
    assert out["text"] == " ".join(p.strip() for p in out["parts"] if p.strip())
    assert out["hwm_mib"] < 700, out["hwm_mib"]   # unwindowed: ~1370 MiB


@pytest.mark.slow  # compiles a deployable and builds the host's runtime (minutes, once)
def test_board_transcriber_windows_long_audio_as_python_does(tiny_random_model, tmp_path):
    """tinyasr-run cuts long audio where model/network/windows.py does: on 70 s of bundled samples
    (three windows) a host deployable prints CompiledRecognizer's transcript."""
    import wave

    from tinyasr.compile.deployable import build_deployable
    from tinyasr.model.network.model_dir import save_model_dir
    from tinyasr.targets.boards import get_board
    from tinyasr.targets.host.runner import CompiledRecognizer
    from tinyasr.targets.native_build import build_runtime

    save_model_dir(*tiny_random_model, tmp_path / "model")
    build_deployable(tmp_path / "model", get_board("host"), tmp_path / "host")
    audio = np.concatenate([load_wav(w) for w in _sample_wavs()] * 10)[:70 * SAMPLE_RATE]
    assert len(windows.window_bounds(audio)) == 3
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(audio.astype(np.int16).tobytes())
    transcriber = build_runtime(get_board("host")).transcriber
    result = subprocess.run([str(transcriber), str(tmp_path / "host"), str(path)],
                            capture_output=True, text=True, timeout=600, check=True)
    expected = CompiledRecognizer.load(tmp_path / "host").transcribe(load_wav(path))
    assert expected and result.stdout.splitlines() == [expected]
