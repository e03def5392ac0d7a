"""Data-parallel training: ranks agree, accumulation matches ranks, kills end cleanly, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import torch.multiprocessing as mp

from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.model.training import distributed
from tinyasr.model.training.dataset.batching import collate
from tinyasr.model.training.train import Recipe, Trainer

# No SpecAugment and no dropout: the only randomness left is the seeded stream, so one process
# and two see the same numbers up to the order of float additions.
RECIPE = {
    "model": {"d_model": 32, "attention_heads": 2, "ffn_dim": 64, "subsampling_channels": 8,
              "encoder_layers": 2, "encoder_distinct": 1, "decoder_layers": 1,
              "decoder_distinct": 1, "dropout": 0.0, "spec_augment": False},
    "train": {"epochs": 5, "batch_seconds": 5, "warmup_steps": 3, "peak_lr": 0.01,
              "save_every_steps": 1, "average_last": 1, "cmvn_utterances": 12,
              "shuffle_buffer": 4, "sort_buffer": 6},
    "augment": {"speeds": [0.9, 1.0, 1.1], "gain_prob": 0.5},
}


def train_rank(rank: int, world: int, port: int, data: str, recipe: dict, out: str,
               result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    context = distributed.init("cpu")
    trainer = Trainer(Path(data), Recipe.from_dict(recipe), Path(out), context)
    before = samples_loss(trainer)
    trainer.run()
    torch.save({"model": trainer.model.state_dict(), "before": before,
                "after": samples_loss(trainer), "step": trainer.step}, f"{result}.{rank}")
    distributed.shutdown()


def samples_loss(trainer: Trainer) -> float:
    """The model's loss on all bundled samples, unaugmented, in eval mode."""
    utterances = read_data_dir(SAMPLES_DIR)
    model = trainer.model.eval()
    with torch.no_grad():
        fbanks = [model.fbank(torch.from_numpy(load_wav(u.wav))[None])[0] for u in utterances]
        loss, _ = model.loss(*collate(fbanks, [trainer.tokenizer.encode(u.text)
                                               for u in utterances]))
    model.train()
    return loss.item()


def run_ranks(world: int, corpus: Path, recipe: dict, tmp: Path) -> list[dict]:
    result = str(tmp / "result")
    mp.spawn(train_rank, args=(world, distributed.free_port(), str(corpus), recipe,
                               str(tmp / "run"), result), nprocs=world)
    return [torch.load(f"{result}.{rank}", weights_only=True) for rank in range(world)]


def test_two_ranks_agree_and_learn_and_match_one_rank_accumulating(samples_train_dev: Path,
                                                                   tmp_path: Path):
    two = run_ranks(2, samples_train_dev, RECIPE, tmp_path / "two")
    assert two[0]["step"] == two[1]["step"] >= 6
    for name, weight in two[0]["model"].items():
        assert torch.equal(weight, two[1]["model"][name]), name   # DDP: same bits on each rank
    # 113 -> 77 on the bundled samples in 19 steps; 0.85 leaves room for other CPUs' rounding.
    assert two[0]["after"] < 0.85 * two[0]["before"], (two[0]["before"], two[0]["after"])

    accumulating = {**RECIPE, "train": {**RECIPE["train"], "accum_grad": 2}}
    one = run_ranks(1, samples_train_dev, accumulating, tmp_path / "one")[0]
    assert one["step"] == two[0]["step"]
    # The same batches in each step, gradients averaged over them. Here the weights come out
    # bit-identical (halving is exact in binary floating point and a sum of two has one order);
    # another all-reduce algorithm, or more ranks, may add in another order, a rounding that
    # Adam carries through the steps: 1e-5 is far below one step's update (~lr = 1e-2).
    for name, weight in one["model"].items():
        torch.testing.assert_close(weight, two[0]["model"][name], rtol=0, atol=1e-5)


def tinyasr(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, distributed.TIMEOUT_ENV: "30"}
    return subprocess.Popen([sys.executable, "-m", "tinyasr.scripts.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def saved_step(run: Path) -> int:
    state = run / "state.pt"
    return torch.load(state, weights_only=True)["step"] if state.exists() else 0


def wait_for_step(run: Path, step: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while saved_step(run) < step and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None and saved_step(run) >= step, "training ended too early"


def test_kill_9_of_two_ranks_resumes_on_one(samples_train_dev: Path, tmp_path: Path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**RECIPE, "train": {**RECIPE["train"], "epochs": 6}}))
    run = tmp_path / "run"
    args = ("train", "--data", str(samples_train_dev), "--config", str(recipe), "--out", str(run),
            "--threads", "1")
    first = tinyasr(*args, "--nproc", "2")
    wait_for_step(run, 2, first)
    ranks = psutil.Process(first.pid).children()
    assert len(ranks) == 2
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # The ranks die with their launcher (PR_SET_PDEATHSIG): nothing goes on writing the run.
    gone, alive = psutil.wait_procs(ranks, timeout=10)
    assert not alive
    step_at_kill = saved_step(run)

    second = tinyasr(*args, "--nproc", "1")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "resuming" in out and "on 1 process(es)" in out
    assert saved_step(run) > step_at_kill
    model, _ = load_model_dir(run / "final")
    assert model.encoder.layer_map == [0, 0]


def test_a_dead_rank_stops_the_others(samples_train_dev: Path, tmp_path: Path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**RECIPE, "train": {**RECIPE["train"], "epochs": 50}}))
    run = tmp_path / "run"
    process = tinyasr("train", "--data", str(samples_train_dev), "--config", str(recipe),
                      "--out", str(run), "--threads", "1", "--nproc", "2")
    wait_for_step(run, 1, process)
    rank0, rank1 = psutil.Process(process.pid).children()
    rank1.kill()
    started = time.time()
    _, err = process.communicate(timeout=60)
    assert time.time() - started < 15        # the launcher ends rank 0 at once
    assert not rank0.is_running() or rank0.status() == psutil.STATUS_ZOMBIE
    assert process.returncode == 137
    assert err.strip().splitlines()[-1] == ("tinyasr: error: training rank 1 exited with code "
                                            "-9; the other ranks were stopped")


@pytest.mark.parametrize("option, message", [
    (("--nproc", "4096"), "--nproc 4096: this machine has"),
    (("--device", "cuda"), "--device cuda: no CUDA GPU is visible"),
    (("--precision", "fp16", "--device", "cpu"), "--precision fp16: needs a CUDA device"),
    (("--nproc", "0"), "--nproc must be at least 1"),
])
def test_what_the_machine_cannot_do_is_one_line(samples_train_dev: Path, tmp_path: Path, option,
                                                message):
    if option[:2] == ("--device", "cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(RECIPE))
    process = tinyasr("train", "--data", str(samples_train_dev), "--config", str(recipe),
                      "--out", str(tmp_path / "run"), *option)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tinyasr: error: {message}"), lines


@pytest.mark.parametrize("value", ["lots", "-1"])
def test_a_bad_mmap_threshold_is_one_line(samples_train_dev: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, value: str):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(RECIPE))
    monkeypatch.setenv(distributed.MMAP_THRESHOLD_ENV, value)
    process = tinyasr("train", "--data", str(samples_train_dev), "--config", str(recipe),
                      "--out", str(tmp_path / "run"), "--nproc", "2")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert err.strip().splitlines() == [
        f"tinyasr: error: {distributed.MMAP_THRESHOLD_ENV}: expected bytes"
        f"{' >= 0' if value == '-1' else ''}, not {value!r}"]
    assert not (tmp_path / "run").exists()


def test_bf16_autocast_trains_on_cpu(samples_train_dev: Path, tmp_path: Path):
    recipe = Recipe.from_dict({**RECIPE, "train": {**RECIPE["train"], "epochs": 1}})
    trainer = Trainer(samples_train_dev, recipe, tmp_path / "run", precision=torch.bfloat16)
    trainer.train_epoch()
    assert trainer.step >= 2 and all(torch.isfinite(torch.tensor(trainer.losses)))


def test_without_the_launcher_a_dead_peer_ends_a_rank(samples_train_dev: Path, tmp_path: Path):
    """Ranks started as torchrun starts them, nothing watching them: when rank 1 dies, rank 0's
    next collective fails (closed connection, or at the latest TINYASR_DIST_TIMEOUT) and it
    exits instead of waiting for ever."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**RECIPE, "train": {**RECIPE["train"], "epochs": 50}}))
    run = tmp_path / "run"
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(distributed.free_port()),
            "WORLD_SIZE": "2", distributed.TIMEOUT_ENV: "20"}
    ranks = [subprocess.Popen([sys.executable, "-m", "tinyasr.scripts.cli", "train", "--data",
                               str(samples_train_dev), "--config", str(recipe), "--out", str(run),
                               "--threads", "1"],
                              env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    try:
        wait_for_step(run, 1, ranks[0])
        ranks[1].kill()
        started = time.time()
        _, err = ranks[0].communicate(timeout=60)
        assert time.time() - started < 45     # the 20 s timeout, plus a step and teardown
        assert ranks[0].returncode == 1
        assert err.strip().splitlines()[-1].startswith("tinyasr: error: rank 0: lost the other "
                                                        "ranks ("), err[-2000:]
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
            process.wait()
