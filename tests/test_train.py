"""Training end to end on real synthesized speech: checkpoints, resume after kill -9, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL, SAMPLES_DIR
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training.train import Recipe, Trainer, remove_stale_temp_files

TINY_RECIPE = {
    "model": {"d_model": 32, "attention_heads": 2, "ffn_dim": 64, "subsampling_channels": 8,
              "encoder_layers": 4, "encoder_distinct": 2, "decoder_layers": 2,
              "decoder_distinct": 1},
    "train": {"epochs": 3, "batch_seconds": 8, "warmup_steps": 5, "save_every_steps": 1,
              "average_last": 2, "cmvn_utterances": 8},
}


def tinyasr(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tinyasr.scripts.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def saved_step(run: Path) -> int:
    state = run / "state.pt"
    if not state.exists():
        return 0
    return torch.load(state, map_location="cpu", weights_only=True)["step"]


def test_training_resumes_after_kill_9(tiny_corpus: Path, tmp_path: Path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    run = tmp_path / "run"
    args = ("train", "--data", str(tiny_corpus), "--config", str(recipe), "--out", str(run),
            "--threads", "1")

    first = tinyasr(*args)
    deadline = time.time() + 120
    while saved_step(run) < 3 and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert first.poll() is None, "training ended before it could be killed"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    step_at_kill = saved_step(run)
    assert step_at_kill >= 3

    second = tinyasr(*args)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "resuming" in out
    assert saved_step(run) > step_at_kill
    assert sorted(p.name for p in run.glob("epoch_*.pt")) == ["epoch_1.pt", "epoch_2.pt",
                                                             "epoch_3.pt"]
    model, tokenizer = load_model_dir(run / "final")
    assert model.encoder.layer_map == [0, 0, 1, 1]
    assert tokenizer.decode(tokenizer.encode("turn on")) == "turn on"

    # The epoch count may change on resume: cutting the finished run to 2 re-averages 1-2.
    third = tinyasr(*args, "--epochs", "2")
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    assert "averaged epochs 1-2" in out

    # A teacher may join on resume: one more epoch, distilled from the run's own average.
    teacher = tmp_path / "teacher"
    (run / "final").rename(teacher)
    fourth = tinyasr(*args, "--epochs", "4", "--teacher", str(teacher))
    out, err = fourth.communicate(timeout=300)
    assert fourth.returncode == 0, err
    assert f"distilling from {teacher}" in out and "epoch 4:" in out
    assert json.loads((run / "run.json").read_text())["train"]["teacher"] == str(teacher)


def test_a_different_recipe_cannot_reuse_a_run_dir(tiny_corpus: Path, tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": {}, "train": {}}))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    process = tinyasr("train", "--data", str(tiny_corpus), "--config", str(recipe),
                      "--out", str(run))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert err.strip().splitlines() == [f"tinyasr: error: {run}: holds a run with a different "
                                        "config; use another --out"]


def test_bad_recipe_is_one_line(tmp_path: Path, tiny_corpus: Path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"train": {"epochz": 3}}')
    process = tinyasr("train", "--data", str(tiny_corpus), "--config", str(recipe),
                      "--out", str(tmp_path / "run"))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert len(err.strip().splitlines()) == 1 and str(recipe) in err


def test_a_teacher_with_other_tokens_is_refused(tiny_corpus: Path, tmp_path: Path):
    shipped_model = DEFAULT_MODEL
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    process = tinyasr("train", "--data", str(tiny_corpus), "--config", str(recipe),
                      "--out", str(tmp_path / "run"), "--teacher", str(shipped_model))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert err.strip().splitlines() == [f"tinyasr: error: {shipped_model}: teacher has other "
                                        "tokens than this run"]


def test_out_of_range_train_values_are_one_line_naming_the_key(tmp_path: Path):
    for key, value in [("warmup_steps", 0), ("epochs", -1), ("average_last", 0),
                       ("save_every_steps", 1.5), ("batch_seconds", 0), ("cmvn_utterances", 0)]:
        recipe = tmp_path / f"{key}.json"
        recipe.write_text(json.dumps({"train": {key: value}}))
        with pytest.raises(InputError, match=rf"^{recipe}: bad training config \(train\.{key} "
                                             rf"must be a positive"):
            Recipe.load(recipe)
    # average_last beyond epochs is allowed: the final model averages the epochs there are.
    recipe = tmp_path / "ok.json"
    recipe.write_text(json.dumps({"train": {"epochs": 2, "average_last": 5}}))
    assert Recipe.load(recipe).train.average_last == 5


class Payload:
    """Not a tensor or a container: loading it would need to run this module's code."""


def test_a_state_that_is_not_a_state_dict_is_one_line(tiny_corpus: Path, tmp_path: Path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    args = ("train", "--data", str(tiny_corpus), "--config", str(recipe), "--threads", "1")
    for name, content in [("code", {"model": Payload()}), ("list", [1, 2]),
                          ("partial", {"model": {}})]:
        run = tmp_path / name
        run.mkdir()
        torch.save(content, run / "state.pt")
        process = tinyasr(*args, "--out", str(run))
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"tinyasr: error: {run / 'state.pt'}: not a training state ("), lines


def test_leftover_temp_files_of_dead_runs_are_removed(tmp_path: Path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".state.pt.{dead.pid}.tmp"
    live = tmp_path / f".state.pt.{os.getpid()}.tmp"
    other = tmp_path / "notes.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"x")
    remove_stale_temp_files(tmp_path)
    assert not stale.exists() and live.exists() and other.exists()


def samples_corpus(root: Path, train: Path) -> Path:
    """A corpus dir whose train/ is `train` and dev/ the bundled samples."""
    root.mkdir()
    (root / "train").symlink_to(train)
    (root / "dev").symlink_to(SAMPLES_DIR)
    return root


def test_training_reads_shards(tmp_path: Path):
    shards = tmp_path / "shards"
    process = tinyasr("data", "shard", str(SAMPLES_DIR), str(shards), "--per-shard", "4")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 1}}))
    run = tmp_path / "run"
    process = tinyasr("train", "--data", str(samples_corpus(tmp_path / "corpus", shards)),
                      "--config", str(recipe), "--out", str(run), "--threads", "1")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "epoch 1: dev CER" in out and (run / "final").is_dir()
    assert json.loads((run / "tokens.json").read_text()) == Tokenizer.from_texts(
        u.text for u in read_data_dir(SAMPLES_DIR)).tokens


def test_more_than_one_percent_unreadable_stops_the_run(tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLES_DIR, data)
    line = (data / "wav.scp").read_text().splitlines()[2]
    (data / line.split()[1]).write_bytes(b"RIFF")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    corpus = samples_corpus(tmp_path / "corpus", data)
    process = tinyasr("train", "--data", str(corpus), "--config", str(recipe),
                      "--out", str(tmp_path / "run"), "--threads", "1")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2
    lines = [line for line in err.splitlines() if line.startswith("tinyasr:")]
    assert lines[0].startswith(f"tinyasr: warning: {corpus / 'train' / 'wav.scp'}:3: ")
    assert lines[0].endswith("unreadable wav (truncated header); skipped")
    assert lines[-1].startswith(f"tinyasr: error: {corpus / 'train'}: ")
    assert "more than 1%" in lines[-1] and len(lines) == 2


class Interrupted(Exception):
    pass


@pytest.fixture
def one_thread():
    """DataLoader workers compute fbank on one thread; so does the main process here, since a
    matmul split over another thread count may round differently."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_resumed_run_continues_the_same_stream(tmp_path: Path, one_thread):
    """Killed after step 3 and resumed (with DataLoader workers this time), a run ends with the
    same weights, bit for bit, as one never interrupted: the batches, the augmentation, the
    SpecAugment masks and dropout are all drawn from (seed, epoch, batch)."""
    corpus = samples_corpus(tmp_path / "corpus", SAMPLES_DIR)
    raw = {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 1},
           "augment": {"speeds": [0.9, 1.0, 1.1], "noise_prob": 0.5, "vtlp_prob": 0.5}}
    whole = Trainer(corpus, Recipe.from_dict(raw), tmp_path / "whole")
    whole.train_epoch()

    interrupted = Trainer(corpus, Recipe.from_dict(raw), tmp_path / "resumed")
    save = interrupted._save_state

    def save_then_die() -> None:
        save()
        if interrupted.step == 3:
            raise Interrupted
    interrupted._save_state = save_then_die
    with pytest.raises(Interrupted):
        interrupted.train_epoch()
    with_workers = {**raw, "train": {**raw["train"], "data_workers": 2}}
    resumed = Trainer(corpus, Recipe.from_dict(with_workers), tmp_path / "resumed")
    assert resumed.step == 3 and resumed.next_batch == 3
    resumed.train_epoch()
    assert resumed.step == whole.step > 3
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
