"""`train`: recipes of wrong types and out-of-range values, its arguments, corpora without a
split, output paths, and run dirs it cannot resume (state.pt, run.json, tokens.json)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from bad_inputs.corpus import Case, Corpus
from bad_inputs.models import CodeOnUnpickle
from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training.train import Recipe

# A model and run small enough that a recipe taken by mistake trains in seconds.
TINY = {"model": {"d_model": 32, "attention_heads": 2, "ffn_dim": 64, "subsampling_channels": 8,
                  "encoder_layers": 2, "encoder_distinct": 1, "decoder_layers": 1,
                  "decoder_distinct": 1},
        "train": {"epochs": 1, "batch_seconds": 30, "warmup_steps": 5, "average_last": 1,
                  "save_every_steps": 5, "cmvn_utterances": 2}}


def with_change(section: str, change: dict) -> dict:
    return {**TINY, section: {**TINY.get(section, {}), **change}}


def add_cases(c: Corpus) -> None:
    recipes, runs = c.dir("train-recipes"), c.root / "train-runs"
    tiny = recipes / "tiny.json"
    tiny.write_text(json.dumps(TINY))

    def train(name: str, *argv: str, recipe: Path = tiny, data: Path | None = None,
              out: Path | None = None) -> tuple[str, ...]:
        return ("train", "--data", str(data or c.corpus), "--config", str(recipe), "--out",
                str(out or runs / name), *argv)

    def bad_recipe(name: str, content: object, expect: str) -> None:
        path = recipes / f"{name}.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        c.add(f"train-recipe-{name}", Case("train", train(name, recipe=path), expect, str(path)))

    bad_recipe("not-json", "{\"train\": {", "bad training config")
    bad_recipe("empty", "", "bad training config")
    bad_recipe("a-list", [TINY], "expected a JSON object")
    bad_recipe("train-a-list", {**TINY, "train": [1]}, "train")
    bad_recipe("model-a-list", {**TINY, "model": [1]}, "model")
    bad_recipe("augment-a-string", {**TINY, "augment": "on"}, "augment")
    bad_recipe("unknown-section", {**TINY, "optimizer": {}}, "optimizer")
    bad_recipe("unknown-train-key", with_change("train", {"lr": 0.1}), "lr")
    bad_recipe("unknown-model-key", with_change("model", {"layers": 3}), "layers")
    bad_recipe("model-vocab-size", with_change("model", {"vocab_size": 40}), "vocab_size")
    for key, value in [("epochs", 0), ("epochs", 1.5), ("warmup_steps", 0), ("average_last", 0),
                       ("save_every_steps", 0), ("batch_seconds", 0), ("batch_seconds", "x"),
                       ("cmvn_utterances", -1), ("accum_grad", 0), ("shuffle_buffer", 0),
                       ("sort_buffer", True), ("data_workers", -1), ("distill_weight", 2),
                       ("distill_weight", "x"), ("peak_lr", -1), ("peak_lr", "x"),
                       ("peak_lr", 0), ("grad_clip", -1), ("grad_clip", "x"), ("seed", "x"),
                       ("seed", -1), ("teacher", 5)]:
        bad_recipe(f"{key}-{value}", with_change("train", {key: value}), f"train.{key}")
    for key, value, expect in [("d_model", 0, "d_model"), ("attention_heads", 5, "divisible"),
                               ("encoder_distinct", 3, "encoder_distinct"),
                               ("dropout", 1, "dropout"), ("d_model", 10**6, "parameters")]:
        bad_recipe(f"model-{key}-{value}", with_change("model", {key: value}), expect)
    bad_recipe("augment-speeds-0", with_change("augment", {"speeds": [0]}), "augment.speeds")
    bad_recipe("augment-noise-dir-missing",
               with_change("augment", {"noise_prob": 0.5, "noise_dir": "/nowhere"}), "/nowhere")

    for name, argv, expect, names in [
            ("epochs-0", ("--epochs", "0"), "--epochs", "--epochs"),
            ("epochs-text", ("--epochs", "x"), "--epochs", "--epochs"),
            ("nproc-0", ("--nproc", "0"), "--nproc", "--nproc"),
            ("nproc-1000", ("--nproc", "1000"), "--nproc", "--nproc"),
            ("threads-0", ("--threads", "0"), "--threads", "--threads"),
            ("distill-weight-2", ("--distill-weight", "2"), "--distill-weight",
             "--distill-weight"),
            ("distill-weight-nan", ("--distill-weight", "nan"), "--distill-weight",
             "--distill-weight"),
            ("device-unknown", ("--device", "tpu"), "--device", "--device"),
            ("precision-fp16-on-cpu", ("--device", "cpu", "--precision", "fp16"), "fp16",
             "fp16"),
            ("teacher-missing", ("--teacher", str(c.root / "no-teacher")),
             "not a tinyasr model directory", str(c.root / "no-teacher")),
            ("teacher-other-tokens", ("--teacher", str(c.model_dir)), "other tokens",
             str(c.model_dir)),
            ("teacher-is-a-tac", ("--teacher", str(c.tac)), "not a tinyasr model directory",
             str(c.tac))]:
        c.add(f"train-{name}", Case("train", train(name, *argv), expect, names))
    c.add("train-recipe-missing", Case("train", train("r", recipe=recipes / "gone.json"),
                                       "bad training config", str(recipes / "gone.json")))
    c.add("train-recipe-a-directory", Case("train", train("rd", recipe=recipes),
                                           "bad training config", str(recipes)))
    c.add("train-data-missing", Case("train", train("dm", data=c.root / "no-corpus"),
                                     "no-corpus", str(c.root / "no-corpus")))
    no_dev = c.corpus_with("no-dev", "dev", c.root / "nothing")
    c.add("train-corpus-without-dev", Case("train", train("nd", data=no_dev), "dev",
                                           str(no_dev / "dev")))
    no_train = c.corpus_with("no-train", "train", c.root / "nothing")
    c.add("train-corpus-without-train", Case("train", train("nt", data=no_train), "train",
                                             str(no_train / "train")))
    c.add("train-out-is-a-file", Case("train", train("of", out=c.a_file("train")),
                                      "not a directory", str(c.a_file("train"))))
    c.add("train-out-under-a-file", Case("train", train("ouf", out=c.a_file("train-u") / "r"),
                                         "not a directory", str(c.a_file("train-u"))))
    c.add("train-tiny-run", Case("train", train("tiny-run"), None))

    # run dirs to resume: what a run of TINY on the good corpus wrote, then broken
    recipe = Recipe.from_dict(json.loads(tiny.read_text()))
    tokens = Tokenizer.from_texts(u.text for u in read_data_dir(c.corpus / "train"))

    def run_dir(name: str) -> Path:
        path = runs / f"resume-{name}"
        path.mkdir(parents=True)
        (path / "run.json").write_text(json.dumps(recipe.to_dict()))
        tokens.save(path / "tokens.json")
        return path

    state_keys = {"model": {}, "optimizer": {}, "epoch": 0, "next_batch": 0, "step": 0,
                  "train_seconds": 0.0}
    for name, content, expect in [
            ("state-random", bytes(range(256)) * 4, "not a training state"),
            ("state-empty", b"", "not a training state"),
            ("state-code-pickle", pickle.dumps(CodeOnUnpickle()), "not a training state"),
            ("state-a-list", [1, 2], "not a training state"),
            ("state-missing-keys", {"model": {}}, "missing"),
            ("state-empty-model", state_keys, "not a training state"),
            ("state-epoch-string", {**state_keys, "epoch": "x"}, "not a training state")]:
        path = run_dir(name)
        if isinstance(content, bytes):
            (path / "state.pt").write_bytes(content)
        else:
            torch.save(content, path / "state.pt")
        c.add(f"train-resume-{name}", Case("train", train(name, out=path), expect,
                                           str(path / "state.pt")))
    other = run_dir("other-recipe")
    (other / "run.json").write_text(json.dumps(with_change("train", {"peak_lr": 0.5})))
    c.add("train-resume-other-recipe", Case("train", train("o", out=other),
                                            "different config", str(other)))
    torn = run_dir("run-json-torn")
    (torn / "run.json").write_text("{\"model\": ")
    c.add("train-resume-run-json-torn", Case("train", train("t", out=torn),
                                             "different config", str(torn)))
    bad_tokens = run_dir("tokens-torn")
    (bad_tokens / "tokens.json").write_text("[\"<blank>\"")
    c.add("train-resume-tokens-torn", Case("train", train("k", out=bad_tokens),
                                           "not a tinyasr token list",
                                           str(bad_tokens / "tokens.json")))
    a_dir = run_dir("state-a-directory")
    (a_dir / "state.pt").mkdir()
    c.add("train-resume-state-a-directory", Case("train", train("sd", out=a_dir),
                                                 "not a training state", str(a_dir / "state.pt")))
