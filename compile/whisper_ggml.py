"""A converted Whisper model dir as a GGML model file, the format whisper.cpp loads: the bench's
whisper.cpp row runs the very weights the other rows run.

    python -m tinyasr.compile.whisper_ggml MODEL_DIR OUT.bin [--type q8_0|f16]

The file, all little-endian int32 unless said:
    magic 0x67676d6c; n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
    n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype (1 f16, 7 mostly q8_0,
    plus 1000 * the quantization format's version, 2, when quantized);
    the mel filters: n_mels, n_fft / 2 + 1, then that many float32 (model/whisper/frontend.py's);
    the byte-level BPE tokens before <|endoftext|>: their count, then per token its length and
    its bytes (whisper.cpp names the special tokens itself from n_vocab);
    per tensor: its number of dimensions, the length of its name, its type (0 f32, 1 f16, 8
    q8_0), its dimensions innermost first (torch's shape reversed), the name, the data.
whisper.cpp expects OpenAI's tensor names and layout: the fused projections of model/whisper
(self-attention's qkv, cross-attention's kv) are split (OpenAI's key has no bias: a key bias
adds the same q . b to every score of a query, which the softmax ignores), the conv biases are
(n_state, 1), the positional embeddings and every vector float32, the conv weights float16,
the linear weights and the token embedding the file's type. q8_0 stores each run of 32 values
of a row as a float16 scale max|x| / 127 and the 32 values round(x / scale) as int8.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from tinyasr.model.common.atomic import atomic_file
from tinyasr.model.common.errors import InputError
from tinyasr.model.whisper.convert import CONFIG_FILE, is_whisper_dir, load_whisper_dir
from tinyasr.model.whisper.frontend import mel_filterbank
from tinyasr.model.whisper.tokenizer import VOCABULARY_FILE, char_to_byte

MAGIC = 0x67676D6C
F32, F16, Q8_0 = 0, 1, 8        # ggml tensor types
FILE_TYPES = {"f16": 1, "q8_0": 7}   # ggml file types (the linear weights' type)
TENSOR_TYPES = {"f16": F16, "q8_0": Q8_0}
QUANTIZATION_VERSION = 2
QUANTIZATION_FACTOR = 1000
Q8_BLOCK = 32
END_OF_TEXT = "<|endoftext|>"


def ggml_tensors(state: dict[str, torch.Tensor], d_model: int
                 ) -> Iterator[tuple[str, np.ndarray, str]]:
    """(whisper.cpp's name, float32 values in torch's layout, kind) of every tensor, kind one
    of "vector" (float32), "conv" (float16), "matrix" (the file's type)."""
    renamed = {"encoder.positions": "encoder.positional_embedding",
               "decoder.positions": "decoder.positional_embedding",
               "decoder.embed_tokens.weight": "decoder.token_embedding.weight"}
    for name, tensor in state.items():
        values = tensor.detach().to(torch.float32).numpy()
        name = renamed.get(name, name).replace("mlp.fc1", "mlp.0").replace("mlp.fc2", "mlp.2")
        if name.endswith((".qkv.weight", ".qkv.bias", ".kv.weight", ".kv.bias")):
            stem, _, kind = name.rpartition(".")
            stem = stem.rsplit(".", 1)[0]
            parts = ("query", "key", "value") if ".qkv." in name else ("key", "value")
            for i, part in enumerate(parts):
                if part == "key" and kind == "bias":
                    continue
                piece = values[i * d_model:(i + 1) * d_model]
                yield f"{stem}.{part}.{kind}", piece, "matrix" if kind == "weight" else "vector"
        elif name.startswith("encoder.conv") and name.endswith(".bias"):
            yield name, values.reshape(-1, 1), "vector"
        elif name.startswith("encoder.conv"):
            yield name, values, "conv"
        elif values.ndim == 2 and "positional_embedding" not in name:
            yield name, values, "matrix"
        else:
            yield name, values, "vector"


def q8_0(values: np.ndarray) -> bytes:
    """Rows of a multiple of 32 values as ggml's q8_0 blocks (float16 scale, 32 int8)."""
    blocks = values.reshape(-1, Q8_BLOCK).astype(np.float32)
    scale = np.abs(blocks).max(axis=1) / 127
    inverse = np.divide(1, scale, out=np.zeros_like(scale), where=scale > 0)
    quantized = np.round(blocks * inverse[:, None]).astype(np.int8)
    record = np.zeros(len(blocks), dtype=[("d", "<f2"), ("qs", "i1", (Q8_BLOCK,))])
    record["d"], record["qs"] = scale.astype(np.float16), quantized
    return record.tobytes()


def _tensor_record(name: str, values: np.ndarray, tensor_type: int) -> bytes:
    if tensor_type == Q8_0 and values.shape[-1] % Q8_BLOCK:
        raise ValueError(f"{name}: rows of {values.shape[-1]} are not q8_0 blocks")
    data = {F32: lambda: values.astype("<f4").tobytes(),
            F16: lambda: values.astype("<f2").tobytes(),
            Q8_0: lambda: q8_0(values)}[tensor_type]()
    encoded = name.encode()
    header = struct.pack(f"<3i{values.ndim}i", values.ndim, len(encoded), tensor_type,
                         *reversed(values.shape))
    return header + encoded + data


def write_ggml(model_dir: Path, out: Path, weight_type: str = "q8_0") -> int:
    """Writes the GGML file of a converted Whisper dir (atomically); its size in bytes."""
    if weight_type not in FILE_TYPES:
        raise InputError(f"--type {weight_type}: expected one of {', '.join(FILE_TYPES)}")
    if not is_whisper_dir(model_dir):
        raise InputError(f"{model_dir}: not a converted Whisper model dir (no {CONFIG_FILE} "
                         "naming the whisper family)")
    model, _, _ = load_whisper_dir(model_dir)
    dims = model.dims
    tokens = (Path(model_dir) / VOCABULARY_FILE).read_text(encoding="utf-8").split("\n")
    if END_OF_TEXT not in tokens:
        raise InputError(f"{Path(model_dir) / VOCABULARY_FILE}: no {END_OF_TEXT} token")
    byte_of = char_to_byte()
    filters = mel_filterbank(dims.n_mels).astype("<f4")
    file_type = FILE_TYPES[weight_type] + (
        QUANTIZATION_FACTOR * QUANTIZATION_VERSION if weight_type == "q8_0" else 0)
    types = {"vector": F32, "conv": F16, "matrix": TENSOR_TYPES[weight_type]}
    with atomic_file(Path(out)) as handle:
        handle.write(struct.pack("<I11i", MAGIC, dims.n_vocab, dims.n_audio_ctx, dims.d_model,
                                 dims.n_heads, dims.n_audio_layers, dims.n_text_ctx,
                                 dims.d_model, dims.n_heads, dims.n_text_layers, dims.n_mels,
                                 file_type))
        handle.write(struct.pack("<2i", *filters.shape) + filters.tobytes())
        base = tokens[:tokens.index(END_OF_TEXT)]
        handle.write(struct.pack("<i", len(base)))
        for token in base:
            encoded = bytes(byte_of[char] for char in token)
            handle.write(struct.pack("<I", len(encoded)) + encoded)
        for name, values, kind in ggml_tensors(model.state_dict(), dims.d_model):
            handle.write(_tensor_record(name, values, types[kind]))
    return Path(out).stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyasr.compile.whisper_ggml",
                                     description="A Whisper model dir as a whisper.cpp file.")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--type", default="q8_0", choices=sorted(FILE_TYPES))
    args = parser.parse_args(argv)
    try:
        size = write_ggml(args.model_dir, args.out, args.type)
    except InputError as error:
        print(f"tinyasr: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}: {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
