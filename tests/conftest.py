"""Shared fixtures: a small real corpus synthesized once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyasr.scripts.synth import synthesize_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus of TTS speech (train/dev/test by voice), small enough to make in seconds."""
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    synthesize_corpus(out, {"train": 16, "dev": 4, "test": 4}, seed=0, jobs=2, force=False)
    return out
