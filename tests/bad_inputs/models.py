"""Bad model dirs (config.json, tokens.json, model.pt) and bad .tac files: each through
`transcribe`, and a few of each through every other command that loads a model, which must
refuse it before any work."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

from bad_inputs.corpus import REPO, Case, Corpus
from bad_inputs.files import tac_header, write_tac


def bad_model_dir(c: Corpus, name: str, file: str, content: object) -> Path:
    """A copy of the tiny model dir with `file` replaced (text, bytes or JSON), or removed
    (content None)."""
    path = c.root / "models" / name
    shutil.copytree(c.model_dir, path)
    if content is None:
        (path / file).unlink()
    elif isinstance(content, bytes):
        (path / file).write_bytes(content)
    else:
        (path / file).write_text(content if isinstance(content, str) else json.dumps(content))
    return path


class CodeOnUnpickle:
    """A pickle that runs a command when loaded without weights_only (it must never be)."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def model_dir_cases(c: Corpus) -> dict[str, tuple[Path, str, str]]:
    """name -> (model dir, expected text, the file the error names)."""
    config = json.loads((c.model_dir / "config.json").read_text())
    tokens = c.tokens
    weights = (c.model_dir / "model.pt").read_bytes()
    cases: dict[str, tuple[Path, str, str]] = {}

    def add(name: str, file: str, content: object, expect: str, names: str | None = None) -> None:
        path = bad_model_dir(c, name, file, content)
        cases[name] = (path, expect, str(path / (names if names is not None else file)))

    add("tokens-dict", "tokens.json", {"<blank>": 0, "<unk>": 1}, "got a dict")
    add("tokens-ints", "tokens.json", list(range(len(tokens))), "token 0 is 0")
    add("tokens-no-specials", "tokens.json", tokens[2:-1], "must start with <blank>")
    add("tokens-not-json", "tokens.json", "[\"<blank>\", ", "not a tinyasr token list")
    add("tokens-duplicate", "tokens.json", [*tokens[:3], tokens[2], *tokens[3:]],
        "appears more than once")
    add("tokens-empty-string", "tokens.json", [*tokens[:2], "", *tokens[3:]], "token 2 is ''")
    add("tokens-non-utf8", "tokens.json", b'["<blank>", "\xff\xfe"]', "not a tinyasr token list")
    add("tokens-fewer-than-vocab", "tokens.json", [*tokens[:3], tokens[-1]],
        "vocab_size")
    add("tokens-more-than-vocab", "tokens.json", [*tokens[:-1], "extra", tokens[-1]],
        "vocab_size")
    add("tokens-missing", "tokens.json", None, "not a model", "")
    add("config-missing", "config.json", None, "no config.json", "")
    add("weights-missing", "model.pt", None, "no model.pt", "")
    for key, (value, expect) in {
        "heads-not-dividing": ({"attention_heads": 3}, "divisible by attention_heads"),
        "negative-size": ({"ffn_dim": -64}, "ffn_dim must be an integer >= 1"),
        "zero-size": ({"d_model": 0}, "d_model must be an integer >= 1"),
        "string-size": ({"d_model": "32"}, "d_model must be an integer >= 1"),
        "float-size": ({"d_model": 32.0}, "d_model must be an integer >= 1"),
        "bool-size": ({"d_model": True}, "d_model must be an integer >= 1"),
        "null-size": ({"ffn_dim": None}, "ffn_dim must be an integer >= 1"),
        "distinct-0": ({"encoder_distinct": 0}, "encoder_distinct must be an integer >= 1"),
        "distinct-over-layers": ({"encoder_distinct": 7}, "at most encoder_layers"),
        "absurd-size": ({"d_model": 2_000_000, "ffn_dim": 8_000_000}, "parameters"),
        "layers-absurd": ({"encoder_layers": 10**12}, "more than 1000"),
        "unknown-key": ({"activations": "static"}, "unknown model config keys: activations"),
        "dropout-2": ({"dropout": 2.0}, "dropout must be a number in [0, 1)"),
        "ctc-weight-negative": ({"ctc_weight": -0.5}, "ctc_weight must be a number in [0, 1]"),
        "spec-augment-string": ({"spec_augment": "yes"}, "spec_augment"),
        "vocab-size-2": ({"vocab_size": 2}, "vocab_size"),
        "fsmn-kernel-changed": ({"fsmn_kernel": 5}, "cannot load weights"),
    }.items():
        add(f"config-{key}", "config.json", {**config, **value}, expect,
            "model.pt" if key == "fsmn-kernel-changed" else None)
    add("config-list", "config.json", [config], "must be a JSON object")
    add("config-no-vocab", "config.json", {k: v for k, v in config.items() if k != "vocab_size"},
        "no vocab_size")
    add("config-empty", "config.json", "", "bad model config")
    add("config-non-utf8", "config.json", b'{"vocab_size": 3\xff}', "bad model config")
    add("weights-empty", "model.pt", b"", "cannot load weights")
    add("weights-truncated", "model.pt", weights[:len(weights) // 2], "cannot load weights")
    add("weights-random", "model.pt", bytes(range(256)) * 16, "cannot load weights")
    add("weights-code-pickle", "model.pt", pickle.dumps(CodeOnUnpickle()), "cannot load weights")
    add("weights-not-a-state-dict", "model.pt", pickle.dumps([1, 2, 3]), "cannot load weights")
    return cases


def tac_cases(c: Corpus) -> dict[str, tuple[Path, str]]:
    """name -> (.tac file, expected text); the error names the file."""
    first = next(iter(tac_header(c.tac)[0]["tensors"]))
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, expect: str, edit: Callable[[dict], object] | None = None,
            raw: Callable[[bytes], bytes] | None = None, replace: bool = False) -> None:
        """A copy of the good .tac whose header `edit` changed in place (or, with `replace`,
        replaced by what it returns) and whose bytes `raw` rewrote."""
        path = c.root / "tacs" / f"{name}.tac"
        path.parent.mkdir(exist_ok=True)
        shutil.copy(c.tac, path)
        if edit is not None:
            header, data = tac_header(path)
            edited = edit(header)
            write_tac(path, edited if replace else header, data)
        if raw is not None:
            path.write_bytes(raw(path.read_bytes()))
        cases[name] = (path, expect)

    def part(header: dict, key: str, value: object) -> None:
        header["tensors"][first]["parts"]["values"][key] = value

    add("tensors-list", "'tensors' must be a JSON object",
        lambda h: h.update(tensors=list(h["tensors"].values())))
    add("negative-offset", "offset", lambda h: part(h, "offset", -16))
    add("offset-past-end", "past the end", lambda h: part(h, "offset", 10**9))
    add("part-shape", "shape", lambda h: part(h, "shape", [1, 2, 3]))
    add("part-dtype", "dtype", lambda h: part(h, "dtype", "float64"))
    add("tensor-missing", first, lambda h: h["tensors"].pop(first))
    add("tensor-extra", "extra.weight", lambda h: h["tensors"].update(
        {"extra.weight": h["tensors"][first]}))
    add("config-absurd", "parameters",
        lambda h: h["config"].update(d_model=2_000_000, ffn_dim=8_000_000))
    add("config-heads", "attention_heads", lambda h: h["config"].update(attention_heads=3))
    add("config-missing", "config", lambda h: h.pop("config"))
    add("config-string", "model config must be a JSON object",
        lambda h: h.update(config="big"))
    add("config-activations", "activations", lambda h: h["config"].update(activations="x"))
    add("activations-unknown", "unknown activations", lambda h: h.update(activations="x"))
    add("tokens-ints", "token 0", lambda h: h.update(tokens=list(range(len(h["tokens"])))))
    add("tokens-short", "tokens for a vocab_size",
        lambda h: h.update(tokens=[*h["tokens"][:3], h["tokens"][-1]]))
    add("header-a-list", "not a JSON object", lambda h: [h], replace=True)
    add("bit-flip", "sha256", raw=lambda d: d[:-7] + bytes([d[-7] ^ 4]) + d[-6:])
    add("truncated", "past the end", raw=lambda d: d[:-100])
    add("header-length-huge", "runs past the end",
        raw=lambda d: d[:12] + struct.pack("<I", 2**31) + d[16:])
    add("header-not-json", "corrupt compressed model",
        raw=lambda d: d[:16] + b"\xff" * 8 + d[24:])
    add("version-9", "format version 9", raw=lambda d: d[:8] + struct.pack("<I", 9) + d[12:])
    add("not-a-tac", "bad magic", raw=lambda d: b"GARBAGE" * 10)
    add("empty", "bad magic", raw=lambda d: b"")
    return cases


def add_cases(c: Corpus) -> None:
    good = c.good_wav
    models = model_dir_cases(c)
    for name, (path, expect, names) in models.items():
        c.add(f"transcribe-model-{name}", Case("transcribe", ("transcribe", str(path), good),
                                               expect, names))
    tacs = tac_cases(c)
    for name, (path, expect) in tacs.items():
        c.add(f"transcribe-tac-{name}", Case("transcribe", ("transcribe", str(path), good),
                                             expect, str(path)))
    c.add("transcribe-shipped-int8-tac", Case("transcribe", ("transcribe", str(
        REPO / "model/pretrained/shared-int8.tac"), c.sample),
        None))

    # A few bad models through every other command that loads one: each refuses it first.
    out = c.root / "model-outs"
    picks = {"tokens-fewer-than-vocab": models, "config-absurd-size": models,
             "weights-code-pickle": models, "config-missing": models,
             "bit-flip": tacs, "part-shape": tacs}
    for name, table in picks.items():
        path, expect = table[name][0], table[name][1]
        names = table[name][2] if table is models else str(path)
        dirs_only = table is models
        commands: dict[str, tuple[str, tuple[str, ...]]] = {
            "evaluate": ("evaluate", ("evaluate", str(c.data), "--model", str(path))),
            "compile": ("compile", ("compile", str(path), "--target", "host", "--out",
                                    str(out / f"compile-{name}"), "--untuned")),
            "export": ("export", ("export", "onnx", str(path), str(out / f"onnx-{name}"))),
            "tune": ("tune", ("tune", str(path), "--target", "host", "--trials", "1",
                              "--work-dir", str(out / f"tune-{name}"))),
            "report": ("report", ("report", f"stage={path}", "--data", str(c.corpus), "--out",
                                  str(out / f"report-{name}"))),
            "demo": ("demo", ("demo", "--model", str(path), "--data", str(c.data))),
            "bench": ("bench", ("bench", "--fp32-model" if dirs_only else "--int8-model",
                                str(path), "--out", str(out / f"bench-{name}"))),
        }
        if dirs_only:
            commands["compress-pack"] = ("compress", ("compress", "pack", str(path), "--out",
                                                      str(out / f"pack-{name}.tac")))
            commands["compress-quantize"] = ("compress", (
                "compress", "quantize", str(path), "--data", str(c.corpus), "--out",
                str(out / f"quantize-{name}.tac")))
            commands["compress-prune"] = ("compress", (
                "compress", "prune", str(path), "--data", str(c.corpus), "--sparsity", "0.5",
                "--steps", "1", "--out", str(out / f"prune-{name}")))
            commands["train-teacher"] = ("train", (
                "train", "--data", str(c.corpus), "--config", "model/configs/shared.json",
                "--out", str(out / f"train-{name}"), "--teacher", str(path)))
        for label, (command, argv) in commands.items():
            c.add(f"{label}-model-{name}", Case(command, argv, expect, names))
