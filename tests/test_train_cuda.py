"""Training on a CUDA GPU: each precision learns, a kill -9 resumes on the GPU and then on the
CPU, one step's loss and gradients match the CPU's, and the NCCL collectives and the DDP wrapper
run. Skipped where PyTorch sees no GPU (CI has none): run on a GPU machine with
`pytest tests/test_train_cuda.py` (the README says how this was last run)."""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_distributed import RECIPE, saved_step, tinyasr, wait_for_step

from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.model.network.san_m import AsrModel, ModelConfig
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training import distributed
from tinyasr.model.training.dataset.batching import collate
from tinyasr.model.training.train import Recipe, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (CI has none)")


def samples_batch(tokenizer: Tokenizer, model: AsrModel) -> tuple[torch.Tensor, ...]:
    """All bundled samples, unaugmented, as one collated batch of raw fbank and token ids."""
    utterances = read_data_dir(SAMPLES_DIR)
    with torch.no_grad():
        fbank = model.fbank.cpu()
        features = [fbank(torch.from_numpy(load_wav(u.wav))[None])[0] for u in utterances]
    return collate(features, [tokenizer.encode(u.text) for u in utterances])


def cpu_loss(trainer: Trainer) -> float:
    """The trainer's model's loss on the bundled samples, on a CPU copy, in eval mode."""
    model = AsrModel(trainer.model.config, trainer.tokenizer.sos_eos)
    model.load_state_dict({k: v.cpu() for k, v in trainer.model.state_dict().items()})
    model.eval()
    with torch.no_grad():
        loss, _ = model.loss(*samples_batch(trainer.tokenizer, model))
    return loss.item()


def cuda() -> distributed.Context:
    return distributed.Context(device=torch.device("cuda", 0))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_learns_on_the_gpu(samples_train_dev: Path, tmp_path: Path, precision: str):
    trainer = Trainer(samples_train_dev, Recipe.from_dict(RECIPE), tmp_path / "run", cuda(),
                      distributed.PRECISIONS[precision])
    before = cpu_loss(trainer)
    final = trainer.run()
    assert all(p.is_cuda for p in trainer.model.parameters())
    after = cpu_loss(trainer)
    # The CPU runs of this recipe go 113 -> 77; any precision must learn as much.
    assert after < 0.85 * before, (before, after)
    assert final is not None
    model, _ = load_model_dir(final)      # written from the GPU, read on the CPU
    assert all(torch.isfinite(p).all() and not p.is_cuda for p in model.parameters())
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert ("scaler" in state) == (precision == "fp16")     # loss scaling resumes too


def test_kill_9_on_the_gpu_resumes_on_the_gpu_then_on_the_cpu(samples_train_dev: Path,
                                                              tmp_path: Path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**RECIPE, "train": {**RECIPE["train"], "epochs": 50}}))
    run = tmp_path / "run"
    args = ("train", "--data", str(samples_train_dev), "--config", str(recipe), "--out", str(run))
    first = tinyasr(*args, "--device", "cuda", "--precision", "fp16")
    wait_for_step(run, 3, first, seconds=300)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    at_kill = saved_step(run)

    # Adam's moments, saved from the GPU, must land on the GPU again (not stay on the CPU).
    second = tinyasr(*args, "--device", "cuda", "--precision", "fp16", "--epochs", "6")
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    assert "resuming" in out and saved_step(run) > at_kill
    on_gpu = saved_step(run)

    third = tinyasr(*args, "--device", "cpu", "--epochs", "7", "--threads", "1")
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    assert "resuming" in out and saved_step(run) > on_gpu
    model, _ = load_model_dir(run / "final")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_one_step_matches_the_cpu():
    """fp32 loss and gradients of one batch, GPU vs CPU, TF32 off: the same sums in another
    order, so float32 rounding (~1e-7 relative per operation over a few hundred operations
    deep) is all that may differ. 1e-4 of the loss and 1e-3 of the largest gradient leave
    room for cuDNN's and cuBLAS's algorithms, and are far below what a wrong kernel gives."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tokenizer = Tokenizer.from_texts(u.text for u in read_data_dir(SAMPLES_DIR))
    config = ModelConfig.from_dict({**RECIPE["model"], "vocab_size": len(tokenizer)})
    torch.manual_seed(0)
    model = AsrModel(config, tokenizer.sos_eos).eval()      # eval: no dropout, no SpecAugment
    batch = samples_batch(tokenizer, model)
    results = {}
    for device in ("cpu", "cuda"):
        model.to(device).zero_grad()
        loss, _ = model.loss(*(t.to(device) for t in batch))
        loss.backward()
        # copies: moving the model to the GPU moves its .grad tensors in place
        results[device] = (loss.item(), {n: p.grad.to("cpu", copy=True)
                                         for n, p in model.named_parameters()
                                         if p.grad is not None})
    (cpu, cpu_grads), (gpu, gpu_grads) = results["cpu"], results["cuda"]
    assert abs(gpu - cpu) <= 1e-4 * abs(cpu), (cpu, gpu)
    largest = max(g.abs().max().item() for g in cpu_grads.values())
    for name, grad in cpu_grads.items():
        assert (gpu_grads[name] - grad).abs().max().item() <= 1e-3 * largest, name


@dataclass(frozen=True)
class OneRankGroup(distributed.Context):
    """A process group of one GPU that the trainer treats as distributed: DDP wraps the model
    and every collective goes through NCCL. One GPU cannot hold two NCCL ranks (NCCL refuses
    a duplicate GPU), so this is the NCCL path a one-GPU machine can run."""

    @property
    def distributed(self) -> bool:
        return True


def nccl_rank(rank: int, port: int, data: str, recipe: dict, out: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    context = OneRankGroup(device=torch.device("cuda", 0))
    sums = distributed.sum_all(context, [1.5, 2.0])
    flags = (distributed.all_true(context, True), distributed.all_true(context, False))
    distributed.barrier(context)
    trainer = Trainer(Path(data), Recipe.from_dict(recipe), Path(out), context)
    wrapped = type(trainer.loop.forward).__name__
    trainer.run()
    torch.save({"backend": dist.get_backend(), "sums": sums, "flags": flags, "wrapped": wrapped,
                "losses": trainer.losses}, result)
    distributed.shutdown()


def test_nccl_collectives_and_ddp_on_one_gpu(samples_train_dev: Path, tmp_path: Path):
    result = tmp_path / "result.pt"
    recipe = {**RECIPE, "train": {**RECIPE["train"], "epochs": 2}}
    mp.spawn(nccl_rank, args=(distributed.free_port(), str(samples_train_dev), recipe,
                              str(tmp_path / "run"), str(result)), nprocs=1)
    outcome = torch.load(result, weights_only=True)
    assert outcome["backend"] == "nccl"
    assert outcome["sums"] == [1.5, 2.0] and outcome["flags"] == (True, False)
    assert outcome["wrapped"] == "DistributedDataParallel"
    assert len(outcome["losses"]) >= 2 and all(map(math.isfinite, outcome["losses"]))
