"""Shared fixtures: a small real corpus and a tiny random model, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.data.synth import synthesize_corpus
from tinyasr.model.network.model_dir import save_model_dir
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.model.network.san_m import AsrModel, ModelConfig
from tinyasr.model.network.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus of TTS speech (train/dev/test by voice), small enough to make in seconds."""
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    synthesize_corpus(out, {"train": 16, "dev": 4, "test": 4}, seed=0, jobs=2, force=False)
    return out


@pytest.fixture(scope="module")
def samples_train_dev(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled samples as a corpus: train/ and dev/ are both the samples' data dir."""
    root = tmp_path_factory.mktemp("samples")
    for split in ("train", "dev"):
        (root / split).symlink_to(SAMPLES_DIR)
    return root


@pytest.fixture(scope="session")
def tiny_random_model() -> tuple[AsrModel, Tokenizer]:
    """A random-init weight-shared model (6 encoder positions over 2 blocks, 2 decoder positions
    over 1) over the bundled samples' characters: small enough to compile in seconds. What it
    says does not matter; tests check that every runtime agrees with PyTorch on it."""
    torch.manual_seed(0)
    tokenizer = Tokenizer.from_texts(u.text for u in read_data_dir(SAMPLES_DIR))
    config = ModelConfig(vocab_size=len(tokenizer), d_model=32, attention_heads=2, ffn_dim=64,
                         subsampling_channels=8, encoder_layers=6, encoder_distinct=2,
                         decoder_layers=2, decoder_distinct=1, dropout=0.0)
    return AsrModel(config, tokenizer.sos_eos).eval(), tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smallest random-init model directory: 2 encoder positions over 1 block, 1 decoder
    layer, over a 2-sentence vocabulary (test files may define their own `model_dir`)."""
    torch.manual_seed(0)
    tokenizer = Tokenizer.from_texts(["turn on the lights", "set a timer"])
    config = ModelConfig(vocab_size=len(tokenizer), d_model=32, attention_heads=2, ffn_dim=64,
                         subsampling_channels=8, encoder_layers=2, encoder_distinct=1,
                         decoder_layers=1, decoder_distinct=1, dropout=0.0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model_dir(AsrModel(config, tokenizer.sos_eos), tokenizer, path)
    return path
