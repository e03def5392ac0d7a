"""A trained model on disk: one directory, three files.

    config.json   the ModelConfig (architecture and loss settings)
    tokens.json   the tokenizer's token list (id = position)
    model.pt      the state dict: weights and the CMVN statistics, shared weights stored once

Written atomically (a temp dir beside the destination, then a rename) so a reader never sees a
half-written model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from tinyasr.model.common.atomic import staged_directory
from tinyasr.model.common.errors import InputError, first_line
from tinyasr.model.network.san_m import AsrModel, ModelConfig
from tinyasr.model.network.tokenizer import Tokenizer

CONFIG_FILE = "config.json"
TOKENS_FILE = "tokens.json"
WEIGHTS_FILE = "model.pt"


def save_model_dir(model: AsrModel, tokenizer: Tokenizer, path: Path,
                   extra_files: dict[str, str] | None = None) -> None:
    """Writes the three files (plus `extra_files`: name -> text, e.g. pruning.json) atomically."""
    with staged_directory(Path(path)) as staging:   # old aside, new in, old deleted
        (staging / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        tokenizer.save(staging / TOKENS_FILE)
        torch.save(model.state_dict(), staging / WEIGHTS_FILE)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)


def load_model_dir(path: Path) -> tuple[AsrModel, Tokenizer]:
    """The model (in eval mode) and its tokenizer, or a one-line error naming what is wrong."""
    path = Path(path)
    for name in (CONFIG_FILE, TOKENS_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise InputError(f"{path}: not a tinyasr model directory (no {name})")
    try:
        config = ModelConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
    except (ValueError, TypeError) as error:
        raise InputError(f"{path / CONFIG_FILE}: bad model config ({error})") from None
    tokenizer = Tokenizer.load(path / TOKENS_FILE)
    if len(tokenizer) != config.vocab_size:   # ids past the list, or tokens never predicted
        raise InputError(f"{path / TOKENS_FILE}: {len(tokenizer)} tokens, but {CONFIG_FILE} "
                         f"has vocab_size {config.vocab_size}")
    model = AsrModel(config, tokenizer.sos_eos)
    try:
        with warnings.catch_warnings():   # a foreign pickle's warnings would print pages
            warnings.simplefilter("ignore")
            state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as error:  # torch raises many types for a foreign or truncated file
        raise InputError(f"{path / WEIGHTS_FILE}: cannot load weights "
                         f"({first_line(error)})") from None
    return model.eval(), tokenizer


def model_bytes(path: Path) -> int:
    """Bytes on disk of a model: a compressed file, or the files of a model directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
