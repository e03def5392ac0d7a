"""The Whisper bench (schedules/bench/whisper.py): every row in the JSON, at tiny lengths.
Speed goals live in the bench's output, not here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow   # compiles two host deployables (~1 min), exports ONNX, loads nine engines
def test_whisper_bench_json_has_every_row(tmp_path: Path):
    from tinyasr.schedules.bench.whisper import MEASURED, SYSTEMS, main

    assert main(["--out", str(tmp_path), "--lengths", "1,2", "--max-utterances", "1"]) == 0
    report = json.loads((tmp_path / "whisper_bench.json").read_text())
    rows = {row["system"]: row for row in report["rows"]}
    assert list(rows) == list(SYSTEMS) and report["threads"] == 1
    for system in MEASURED:
        row = rows[system]
        assert row["encoder_ms"] > 0, row
        # 1-2 s utterances emit a few tokens: too few to time (see ms_per_token)
        assert row["ms_per_token"] is None or row["ms_per_token"] > 0, row
        assert set(row["whole_ms"]) == {"1", "2"} and all(v > 0 for v in row["whole_ms"].values())
        # every artifact holds the 39 M weights: int8 everywhere (tvm-int8, its embedding
        # too) is the smallest, 43.6 MB
        assert row["peak_rss_mib"] > 50 and row["artifact_bytes"] > 35e6, row
        assert row["utterances"] == 1 and 0 <= row["wer"] <= 100, row
    # ONNX Runtime's rows load the three exported graphs; int8 is the smaller
    assert (rows["onnxruntime-int8"]["artifact_bytes"]
            < rows["onnxruntime-fp32"]["artifact_bytes"] < 160e6)
    # whisper.cpp's rows load the GGML files of the same weights: q8_0 the smaller
    assert (rows["whisper.cpp-q8_0"]["artifact_bytes"]
            < rows["whisper.cpp-f16"]["artifact_bytes"] < 80e6)
    table = (tmp_path / "whisper_bench.md").read_text()
    assert all(f"| {system} |" in table for system in SYSTEMS)
    assert all(f"fastest peer ({name}) on the {length} s" in table for length in ("1", "2")
               for name in [min((r for r in rows.values() if not r["system"].startswith("tvm")),
                                key=lambda r: r["whole_ms"][length])["system"]])
    assert (tmp_path / "whisper_bench.png").stat().st_size > 1000


def test_ms_per_token_is_measured_only_over_enough_tokens():
    from tinyasr.schedules.bench.whisper import MIN_TIMED_TOKENS, ms_per_token

    assert ms_per_token(1300.0, 500.0, 40) == pytest.approx(20.0)
    assert ms_per_token(264.0, 459.0, 3) is None                  # the jitter CI once met
    assert ms_per_token(264.0, 459.0, MIN_TIMED_TOKENS) is None   # a time that is not positive
    assert ms_per_token(600.0, 400.0, MIN_TIMED_TOKENS - 1) is None


def test_rounds_report_medians_and_keep_every_round():
    from tinyasr.schedules.bench.whisper import median_row

    runs = [{"system": "s", "encoder_ms": ms, "whole_ms": {"5": ms + 10}, "ms_per_token": tok,
             "peak_rss_mib": rss, "wer": 1.0}
            for ms, tok, rss in ((190.0, None, 600.0), (156.0, 4.0, 610.0), (160.0, 6.0, 605.0))]
    row = median_row(runs)
    assert row["encoder_ms"] == 160.0 and row["whole_ms"] == {"5": 170.0}
    assert row["ms_per_token"] == 5.0 and row["peak_rss_mib"] == 610.0 and row["wer"] == 1.0
    assert [r["encoder_ms"] for r in row["rounds"]] == [190.0, 156.0, 160.0]


def test_timed_audio_is_continuous_speech():
    """The 5 s and 20 s utterances are cut from the set's sentences (not its single words,
    whose pauses ended Whisper's transcript early), and 30 s of them exist without repeats."""
    from tinyasr.model.data.datadir import load_wav, read_data_dir
    from tinyasr.model.network.pretrained_paths import REAL_SPEECH_DIR
    from tinyasr.schedules.bench.whisper import (
        MIN_SPEECH_WORDS,
        SAMPLE_RATE,
        WINDOW_SECONDS,
        speech_utterances,
    )

    every = read_data_dir(REAL_SPEECH_DIR)
    speech = speech_utterances(every)
    assert speech and all(len(u.text.split()) >= MIN_SPEECH_WORDS for u in speech)
    assert "commonvoice-en-22058264" not in {u.uid for u in speech}     # "no"
    assert sum(len(load_wav(u.wav)) for u in speech) >= WINDOW_SECONDS * SAMPLE_RATE
