"""What a recipe in model/configs costs: parameters, bytes, FLOPs per second of audio, seconds
per training step on this CPU, and the GPU hours its epochs would take on AISHELL-2.

    .venv/bin/python -m tinyasr.model.training.train_cost [--measure-steps N] [--tflops T]
        [CONFIG...]

Numbers per config (default: every model/configs/*.json):
    parameters    ModelConfig.parameter_count(), the numbers in the state dict (shared blocks
                  once); the vocabulary comes from the data, so each config has an assumed one
                  (VOCAB below: the shipped English token list, AISHELL's character inventories)
    fp32 / int8   payload bytes of the state dict: 4 per number; int8 as `compress quantize`
                  stores it: every weight matrix (linear, FSMN and second conv, embedding) 1 byte
                  per number plus one fp32 scale per output row; the first conv, biases,
                  LayerNorms and CMVN stay fp32 (file headers and config not counted)
    GFLOP/s audio forward FLOPs (torch.utils.flop_counter: 2 per multiply-add of matmuls and
                  convolutions; softmax, norms and elementwise not counted) of the encoder on 1 s
                  of features plus the teacher-forced decoder on that second's tokens
                  (TOKENS_PER_SECOND: characters per second of speech, spaces included for English)
    s/step        measured: AdamW steps of the joint loss on one batch of `--batch-seconds` of
                  padded audio (the bundled samples repeated), after warm-up steps, on
                  `--device` (cpu or cuda) in `--precision` (autocast, as `tinyasr train` runs it)
    GPU h         AISHELL_2_HOURS x PAPER_EPOCHS x forward FLOPs per second of audio x 3 (forward +
                  backward ~ 3x forward) / the assumed achieved `--tflops`; one GPU, padding,
                  data loading and evaluation not counted
    measured GPU h  with `--device cuda`: AISHELL_2_HOURS x PAPER_EPOCHS / the batch's audio
                  seconds x the measured seconds per step, i.e. the same steps timed on this GPU
                  (padding as in the timed batch; data loading and evaluation not counted)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyasr.model.network.pretrained_paths import CONFIG_DIR, SAMPLES_DIR

AISHELL_2_HOURS = 1000.0
PAPER_EPOCHS = 30          # aishell2.json's epochs; the GPU-hour column uses it for every row
# Achieved bf16 TFLOP/s assumed on one H100/H200-class GPU (dense bf16 peak ~990): 100 is ~10%
# of peak, what large matmuls with a good input pipeline reach; 25 is nearer what eager-mode ASR
# training with variable lengths, CTC and data loading often gets. Small models (d_model 144)
# reach far less: their matmuls are too small to fill the GPU.
DEFAULT_TFLOPS = (100.0, 25.0)

# Assumed vocabularies (token list sizes: <blank>, <unk>, characters, <sos/eos>) and speaking
# rates (tokens per second of audio): shared/dense are the shipped English character models
# (31 tokens; ~14 characters/s in the bundled samples), AISHELL-1's and AISHELL-2's character
# inventories are about 4.2k and 5.2k, Mandarin read speech about 3.5 characters/s.
VOCAB = {"shared": 31, "dense": 31, "shared-general": 31, "shared-general-wide": 31,
         "aishell1": 4233, "aishell2": 5235, "aishell2-dense": 5235}
TOKENS_PER_SECOND = {"shared": 14.0, "dense": 14.0, "shared-general": 14.0,
                     "shared-general-wide": 14.0, "aishell1": 3.5, "aishell2": 3.5,
                     "aishell2-dense": 3.5}


@dataclass
class Cost:
    name: str
    vocab: int
    parameters: int
    fp32_bytes: int
    int8_bytes: int
    forward_flops_per_second: float
    epochs: int
    step_seconds: float | None = None
    batch_audio_seconds: float | None = None
    step_device: str = "cpu"
    step_precision: str = "fp32"

    def measured_gpu_hours(self, epochs: int = PAPER_EPOCHS) -> float | None:
        """Hours of the timed steps over AISHELL-2's epochs, when they were timed on a GPU."""
        if self.step_seconds is None or not self.batch_audio_seconds or self.step_device != "cuda":
            return None
        steps = AISHELL_2_HOURS * 3600 * epochs / self.batch_audio_seconds
        return steps * self.step_seconds / 3600

    def gpu_hours(self, tflops: float, epochs: int = PAPER_EPOCHS) -> float:
        train_flops = AISHELL_2_HOURS * 3600 * epochs * self.forward_flops_per_second * 3
        return train_flops / (tflops * 1e12) / 3600


def model_config(path: Path, vocab: int | None = None):
    from tinyasr.model.network.san_m import ModelConfig
    raw = json.loads(Path(path).read_text())
    name = Path(path).stem
    return ModelConfig.from_dict({**raw.get("model", {}),
                                  "vocab_size": vocab or VOCAB.get(name, 5000)})


def build(path: Path, vocab: int | None = None):
    from tinyasr.model.network.san_m import AsrModel
    config = model_config(path, vocab)
    return AsrModel(config, sos_eos=config.vocab_size - 1)


def int8_bytes(model) -> int:
    """Payload bytes of the state dict with weight matrices in int8 (see the module docstring)."""
    first_conv = "encoder.subsampling.conv.0.weight"
    total = 0
    for name, tensor in model.state_dict().items():
        if tensor.dim() >= 2 and name != first_conv:
            total += tensor.numel() + 4 * tensor.shape[0]
        else:
            total += 4 * tensor.numel()
    return total


def forward_flops_per_second(model, tokens_per_second: float) -> float:
    """FLOPs of the encoder on 1 s of audio's features and the decoder on its tokens."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tinyasr.model.network.framing import num_frames
    model.eval()
    frames = num_frames(16000)
    tokens = max(1, round(tokens_per_second)) + 1        # <sos> + the second's tokens
    features = torch.zeros(1, frames, 80)
    ids = torch.ones(1, tokens, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        memory = model.encoder(features)
        model.decoder(ids, torch.tensor([tokens]), memory)
    return float(counter.get_total_flops())


def sample_batch(batch_seconds: float, vocab: int):
    """The bundled samples repeated into one batch of at most `batch_seconds` of padded audio:
    raw fbank and token ids (characters mapped into the vocabulary)."""
    import torch

    from tinyasr.model.data.datadir import load_wav, read_data_dir
    from tinyasr.model.network.frontend import Fbank
    from tinyasr.model.training.dataset.batching import collate
    fbank = Fbank()
    utterances = read_data_dir(SAMPLES_DIR)
    with torch.no_grad():
        features = [fbank(torch.from_numpy(load_wav(u.wav))[None])[0] for u in utterances]
    ids = [[1 + (ord(c) % (vocab - 2)) for c in u.text] for u in utterances]
    longest = max(len(f) for f in features) / 100.0
    count = max(1, int(batch_seconds // longest))
    chosen = [i % len(features) for i in range(count)]
    batch = collate([features[i] for i in chosen], [ids[i] for i in chosen])
    return batch, count * longest


def measure_step_seconds(model, batch, steps: int, device: str = "cpu",
                         precision: str = "fp32") -> float:
    """Median wall seconds of `steps` AdamW steps (after two warm-up steps) on `batch`, on
    `device` under autocast to `precision` (fp16 with loss scaling), as the trainer steps."""
    import torch

    from tinyasr.model.training.distributed import PRECISIONS
    from tinyasr.model.training.loop import clip_and_step, loss_scaler
    dtype = PRECISIONS[precision]
    where = torch.device(device)
    torch.manual_seed(0)
    model.to(where).train()
    batch = tuple(t.to(where) for t in batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = loss_scaler(where, dtype)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(where.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = model.loss(*batch)
        (scaler.scale(loss.float()) if scaler else loss.float()).backward()
        clip_and_step(model, optimizer, 5.0, scaler)
        if where.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def cost(path: Path, measure_steps: int = 0, batch_seconds: float = 80.0, device: str = "cpu",
         precision: str = "fp32") -> Cost:
    name = Path(path).stem
    model = build(path)
    config = model.config
    raw = json.loads(Path(path).read_text())
    result = Cost(name=name, vocab=config.vocab_size, parameters=config.parameter_count(),
                  fp32_bytes=4 * config.parameter_count(), int8_bytes=int8_bytes(model),
                  forward_flops_per_second=forward_flops_per_second(
                      model, TOKENS_PER_SECOND.get(name, 3.5)),
                  epochs=raw.get("train", {}).get("epochs", PAPER_EPOCHS))
    if measure_steps:
        batch, audio = sample_batch(batch_seconds, config.vocab_size)
        result.step_seconds = measure_step_seconds(model, batch, measure_steps, device, precision)
        result.batch_audio_seconds = audio
        result.step_device, result.step_precision = device, precision
    return result


def table(costs: list[Cost], tflops: tuple[float, ...]) -> str:
    gpu = "".join(f" AISHELL-2 GPU h at {t:g} TFLOP/s |" for t in tflops)
    on = {f"{c.step_device} {c.step_precision}" for c in costs if c.step_seconds is not None}
    where = f" ({', '.join(sorted(on))})" if on else ""
    measured = any(c.measured_gpu_hours() is not None for c in costs)
    extra = " AISHELL-2 GPU h measured |" if measured else ""
    lines = [f"| config | vocab | parameters | fp32 MB | int8 MB | GFLOP per s of audio (fwd) "
             f"| s/step{where} |{gpu}{extra}",
             "|---|---|---|---|---|---|---|" + "---|" * (len(tflops) + measured)]
    for c in costs:
        step = ("-" if c.step_seconds is None
                else f"{c.step_seconds:.3g} ({c.batch_audio_seconds:.0f} s batch)")
        hours = c.measured_gpu_hours()
        lines.append(f"| {c.name} | {c.vocab} | {c.parameters:,} | {c.fp32_bytes / 1e6:.2f} | "
                     f"{c.int8_bytes / 1e6:.2f} | {c.forward_flops_per_second / 1e9:.3f} | "
                     f"{step} |" + "".join(f" {c.gpu_hours(t):.2f} |" for t in tflops)
                     + ((" -" if hours is None else f" {hours:.2f}") + " |" if measured else ""))
    return "\n".join(lines)


def arithmetic(c: Cost, tflops: float) -> str:
    flops = AISHELL_2_HOURS * 3600 * PAPER_EPOCHS * c.forward_flops_per_second * 3
    return (f"{c.name}: {AISHELL_2_HOURS:g} h x 3600 s x {PAPER_EPOCHS} epochs x "
            f"{c.forward_flops_per_second / 1e9:.3f} GFLOP/s x 3 = {flops:.3g} FLOP; "
            f"/ {tflops:g}e12 FLOP/s = {flops / (tflops * 1e12) / 3600:.2f} GPU h")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tinyasr.model.training.train_cost",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path,
                        help="recipe JSON files (default: model/configs/*.json)")
    parser.add_argument("--measure-steps", type=int, default=0,
                        help="time this many training steps per config on this CPU (0: none)")
    parser.add_argument("--batch-seconds", type=float, default=80.0)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where the measured steps run (cuda: also the measured GPU hours)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast precision of the measured steps, as `tinyasr train` has")
    parser.add_argument("--json", type=Path, help="also write the numbers here as JSON")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the measured steps (1: on a loaded machine, "
                             "2 threads in one process ran 5x slower than 1 here)")
    parser.add_argument("--tflops", default=",".join(f"{t:g}" for t in DEFAULT_TFLOPS),
                        help="achieved TFLOP/s assumed for the GPU-hour estimate, "
                             "comma-separated for several columns")
    args = parser.parse_args(argv)
    paths = args.configs or sorted(CONFIG_DIR.glob("*.json"))
    import torch

    from tinyasr.model.common.errors import InputError
    from tinyasr.model.training.distributed import check_precision, resolve_device
    try:
        check_precision(args.precision, resolve_device(args.device, 1))
    except InputError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    torch.set_num_threads(args.threads)
    costs = []
    for path in paths:
        costs.append(cost(path, args.measure_steps, args.batch_seconds, args.device,
                          args.precision))
        print(f"done {path.stem}", flush=True, file=sys.stderr)
    tflops = tuple(float(t) for t in str(args.tflops).split(","))
    print(table(costs, tflops))
    print()
    for c in costs:
        print(arithmetic(c, tflops[0]))
    if args.json:
        args.json.write_text(json.dumps(
            [{**asdict(c), "measured_gpu_hours": c.measured_gpu_hours()} for c in costs],
            indent=2) + "\n")


if __name__ == "__main__":
    main()
