"""Where the shipped models and samples lie: plain paths, importable without torch (the command
line's defaults)."""

from pathlib import Path

MODEL_PACKAGE_DIR = Path(__file__).resolve().parent.parent   # tinyasr.model: its data folders
PRETRAINED_DIR = MODEL_PACKAGE_DIR / "pretrained"
CONFIG_DIR = MODEL_PACKAGE_DIR / "configs"                  # training recipes
DEFAULT_MODEL = PRETRAINED_DIR / "shared"          # the shipped weight-shared model (fp32)
COMPRESSED_MODEL = PRETRAINED_DIR / "shared-int8.tac"  # the same, int8: what the demo runs
SAMPLES_DIR = PRETRAINED_DIR / "samples"           # bundled held-out-voice test utterances
REAL_SPEECH_DIR = PRETRAINED_DIR / "realspeech"    # real recorded speech (its README says whence)
