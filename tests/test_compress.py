"""Compression: masks hold through fine-tuning, int8 error bounds, the compressed file's bytes,
the reference runner, the report, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tinyasr.model.compression.prune import (
    FIRST_CONV,
    FineTuning,
    Pruner,
    fine_tune,
    magnitude_mask,
    prune,
    ramp_fraction,
    teacher_of,
)
from tinyasr.model.compression.quantize import (
    calibrate,
    quantizable_layers,
    quantization_aware_fine_tune,
)
from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.decoding.evaluate import evaluate
from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
from tinyasr.model.decoding.recognizer import Recognizer
from tinyasr.model.network.compressed import (
    ALIGN,
    load_compressed,
    read_compressed,
    size_breakdown,
    write_compressed,
)
from tinyasr.model.network.int8 import (
    INT8_MAX,
    Activations,
    Quantization,
    dequantize_per_channel,
    quantize_per_channel,
)
from tinyasr.model.network.model_dir import save_model_dir
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.model.network.san_m import AsrModel, ModelConfig
from tinyasr.model.network.sparsity import BlockShape, prunable_layers, sparsity_of
from tinyasr.model.network.tokenizer import Tokenizer
from tinyasr.model.training import distributed
from tinyasr.model.training.dataset.sources import Corpus
from tinyasr.scripts.cli import main

TOKENIZER = Tokenizer.from_texts(["turn on the lights", "set a timer for ten minutes"])
# fine-tuning streams the bundled samples: a model over their characters
SAMPLES_TOKENIZER = Tokenizer.from_texts(u.text for u in read_data_dir(SAMPLES_DIR))


def tiny_model(encoder_distinct: int = 2, decoder_distinct: int = 1, seed: int = 0,
               tokenizer: Tokenizer = TOKENIZER) -> AsrModel:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=len(tokenizer), d_model=32, attention_heads=2, ffn_dim=64,
                         subsampling_channels=8, encoder_layers=4,
                         encoder_distinct=encoder_distinct, decoder_layers=2,
                         decoder_distinct=decoder_distinct, dropout=0.0)
    return AsrModel(config, tokenizer.sos_eos).eval()


def samples_model() -> AsrModel:
    return tiny_model(tokenizer=SAMPLES_TOKENIZER)


def samples_corpus() -> Corpus:
    return Corpus.open(SAMPLES_DIR)


def fake_examples(count: int = 4) -> tuple[list[torch.Tensor], list[list[int]]]:
    generator = torch.Generator().manual_seed(1)
    fbanks = [torch.randn(80 + 20 * i, 80, generator=generator) * 2 + 8 for i in range(count)]
    return fbanks, [TOKENIZER.encode("turn on the lights")[: 4 + i] for i in range(count)]


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str], *expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinyasr: error: "), err
    for text in expected:
        assert text in err[0]


# --- pruning ---------------------------------------------------------------------------------

def test_magnitude_mask_zeroes_whole_blocks_of_least_norm():
    weight = torch.arange(1, 65, dtype=torch.float32).reshape(8, 8)
    mask = magnitude_mask(weight, 0.5, BlockShape(4, 1))
    blocks = mask.reshape(2, 4, 8).transpose(1, 2)            # (block rows, cols, 4)
    assert ((blocks == 0).all(-1) | (blocks == 1).all(-1)).all()
    assert mask.mean() == 0.5
    assert mask[:4].sum() == 0 and mask[4:].sum() == 32       # the smaller rows go first


def test_cubic_ramp_rises_to_the_target_before_the_ramp_ends():
    fractions = [ramp_fraction(step, 100) for step in range(120)]
    assert fractions == sorted(fractions)
    assert 0 < fractions[0] < 0.5
    assert fractions[99] == 1.0 and fractions.index(1.0) < 100


def test_masks_hold_through_fine_tuning_steps():
    model = samples_model()
    block = BlockShape(1, 4)
    layers = prunable_layers(model, block)
    pruner = Pruner(model, block, {name: 0.75 for name in layers})
    pruner.prune_to(1.0)
    masks = {name: module.parametrizations.weight[0].mask.clone()
             for name, module in layers.items()}
    before = {name: module.weight.detach().clone() for name, module in layers.items()}

    def masked_weights_stay_zero(step: int) -> None:
        for name, module in layers.items():
            assert (module.weight[masks[name] == 0] == 0).all(), (step, name)

    fine_tune(model, SAMPLES_TOKENIZER, samples_corpus(),
              FineTuning(steps=4, lr=1e-2, batch_seconds=4), masked_weights_stay_zero)
    masked_weights_stay_zero(4)
    assert any(not torch.equal(module.weight, before[name]) for name, module in layers.items())
    pruner.finish()
    for name, module in layers.items():
        assert not hasattr(module, "parametrizations")
        assert (module.weight[masks[name] == 0] == 0).all()
        assert sparsity_of(module.weight) == pytest.approx(0.75, abs=0.02)


def test_prune_reaches_per_layer_targets_and_prunes_shared_blocks_once():
    model = samples_model()
    block = BlockShape(4, 1)
    layers = prunable_layers(model, block)
    targets = {name: 0.5 for name in layers}
    targets["encoder.blocks.0.ffn.0"] = 0.9
    prune(model, SAMPLES_TOKENIZER, block, targets, samples_corpus(),
          FineTuning(steps=6, batch_seconds=4))
    for name, module in layers.items():
        assert sparsity_of(module.weight) == pytest.approx(targets[name], abs=0.02), name
    # positions 0 and 1 run block 0: one tensor, pruned once
    assert model.encoder.layer_map == [0, 0, 1, 1]
    assert len([k for k in model.state_dict() if k.endswith("ffn.0.weight")]) == 3



def test_pruning_can_distil_from_the_unpruned_model():
    model = samples_model()
    assert teacher_of(model, FineTuning(distill_weight=0.0)) is None
    teacher = teacher_of(model, FineTuning(distill_weight=0.5))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(t.data_ptr() != m.data_ptr()
               for t, m in zip(teacher.parameters(), model.parameters(), strict=True))

    block = BlockShape(4, 1)
    targets = {name: 0.5 for name in prunable_layers(model, block)}
    prune(model, SAMPLES_TOKENIZER, block, targets, samples_corpus(),
          FineTuning(steps=4, batch_seconds=4, distill_weight=0.5))
    for name, module in prunable_layers(model, block).items():
        assert sparsity_of(module.weight) == pytest.approx(0.5, abs=0.02), name


def prune_rank(rank: int, world: int, port: int, accum_grad: int, result: str) -> None:
    """One rank of a pruning fine-tune of samples_model() on the bundled samples."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    context = distributed.init("cpu")
    model = samples_model()
    block = BlockShape(1, 4)
    prune(model, SAMPLES_TOKENIZER, block, dict.fromkeys(prunable_layers(model, block), 0.5),
          samples_corpus(), FineTuning(steps=6, lr=1e-2, batch_seconds=4, accum_grad=accum_grad),
          context)
    torch.save(model.state_dict(), f"{result}.{rank}")
    distributed.shutdown()


def run_prune_ranks(world: int, accum_grad: int, tmp: Path) -> list[dict]:
    result = str(tmp / f"pruned-{world}")
    mp.spawn(prune_rank, args=(world, distributed.free_port(), accum_grad, result), nprocs=world)
    return [torch.load(f"{result}.{rank}", weights_only=True) for rank in range(world)]


def test_pruning_fine_tune_runs_data_parallel_as_training_does(tmp_path: Path):
    """Two ranks end with the same pruned weights, which are those of one rank taking the same
    batches two at a time (gradients averaged over the same pairs)."""
    two = run_prune_ranks(2, 1, tmp_path)
    one = run_prune_ranks(1, 2, tmp_path)[0]
    for name, weight in two[0].items():
        assert torch.equal(weight, two[1][name]), name
        # float sums in another order, carried by Adam through 6 steps: far below lr = 1e-2
        torch.testing.assert_close(weight, one[name], rtol=0, atol=1e-5)
    model = samples_model()
    model.load_state_dict(two[0])
    for name, module in prunable_layers(model, BlockShape(1, 4)).items():
        assert sparsity_of(module.weight) == pytest.approx(0.5, abs=0.02), name


def test_qat_runs_on_two_ranks_from_the_command_line(tmp_path: Path):
    model_dir = tmp_path / "model"
    save_model_dir(samples_model(), SAMPLES_TOKENIZER, model_dir)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train").symlink_to(SAMPLES_DIR)
    out = tmp_path / "qat.tac"
    done = subprocess.run(
        [sys.executable, "-m", "tinyasr.scripts.cli", "compress", "quantize", str(model_dir),
         "--out", str(out), "--data", str(corpus), "--activations", "dynamic",
         "--qat-steps", "3", "--batch-seconds", "4", "--nproc", "2", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, distributed.TIMEOUT_ENV: "60"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"{out}:") == 1          # rank 0 alone reports (and writes)
    runner, _ = load_compressed(out)
    assert runner is not None
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.tmp"))


# --- quantization ----------------------------------------------------------------------------

def test_per_channel_int8_round_trip_is_within_half_a_step():
    torch.manual_seed(0)
    weight = torch.randn(16, 8, 3) * torch.logspace(-3, 1, 16)[:, None, None]
    weight[5] = 0
    values, scale = quantize_per_channel(weight)
    assert values.dtype == torch.int8 and values.shape == weight.shape and scale.shape == (16,)
    error = (dequantize_per_channel(values, scale) - weight).abs().reshape(16, -1).amax(1)
    assert (error <= scale / 2 * (1 + 1e-5)).all()
    peaks = values.reshape(16, -1).abs().amax(1)
    assert (peaks[torch.arange(16) != 5] == INT8_MAX).all() and peaks[5] == 0


def test_first_conv_stays_fp32_and_the_embedding_is_weight_only():
    model = tiny_model()
    quantization = Quantization(Activations.STATIC, list(quantizable_layers(model)))
    calibrate(model, quantization, *fake_examples())
    assert "encoder.subsampling.conv.0" not in quantization.layers
    assert "decoder.embed" in quantization.layers
    assert "decoder.embed" not in quantization.input_scales


def test_reference_runner_computes_integer_matmuls(tmp_path: Path):
    model = tiny_model()
    quantization = Quantization(Activations.STATIC, list(quantizable_layers(model)))
    calibrate(model, quantization, *fake_examples())
    write_compressed(tmp_path / "m.tac", model, TOKENIZER, BlockShape(4, 1), quantization)
    runner, _ = load_compressed(tmp_path / "m.tac")
    layer = runner.encoder.blocks[0].ffn[0]
    entry = read_compressed(tmp_path / "m.tac").header["tensors"]["encoder.blocks.0.ffn.0.weight"]
    x = torch.randn(5, 32)
    x_int8 = torch.clamp(torch.round(x / entry["input_scale"]), -127, 127).to(torch.int32)
    w_int8, w_scale = quantize_per_channel(model.encoder.blocks[0].ffn[0].weight)
    accumulated = x_int8 @ w_int8.to(torch.int32).T                 # what an int8 kernel sums
    expected = accumulated.float() * entry["input_scale"] * w_scale + layer.bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_quantization_aware_fine_tuning_keeps_zeros_and_lands_on_the_int8_grid():
    model = samples_model()
    block = BlockShape(4, 1)
    pruner = Pruner(model, block, {"encoder.blocks.0.ffn.0": 0.5})
    pruner.prune_to(1.0)
    pruner.finish()
    zeros = model.encoder.blocks[0].ffn[0].weight == 0
    before = model.encoder.blocks[1].ffn[0].weight.detach().clone()
    quantization = Quantization(Activations.STATIC, list(quantizable_layers(model)))
    fbanks, token_ids = fake_examples()
    calibrate(model, quantization, fbanks, token_ids)
    quantization_aware_fine_tune(model, SAMPLES_TOKENIZER, quantization, samples_corpus(),
                                 FineTuning(steps=3, lr=1e-2, batch_seconds=4))
    assert not hasattr(model.encoder.blocks[0].ffn[0], "parametrizations")
    assert model._forward_pre_hooks == {}
    assert model.encoder.blocks[0].ffn[0]._forward_pre_hooks == {}
    assert (model.encoder.blocks[0].ffn[0].weight[zeros] == 0).all()
    trained = model.encoder.blocks[1].ffn[0].weight.detach()
    assert not torch.equal(trained, before)
    torch.testing.assert_close(dequantize_per_channel(*quantize_per_channel(trained)), trained)


# --- the compressed file ---------------------------------------------------------------------

def test_compressed_size_is_the_sum_of_its_parts_with_shared_weights_once(tmp_path: Path):
    model = tiny_model()
    block = BlockShape(4, 1)
    layers = prunable_layers(model, block)
    pruner = Pruner(model, block, {name: 0.8 for name in layers if name != FIRST_CONV})
    pruner.prune_to(1.0)
    pruner.finish()
    quantization = Quantization(Activations.DYNAMIC, list(quantizable_layers(model)))
    size = write_compressed(tmp_path / "m.tac", model, TOKENIZER, block, quantization)
    compressed = read_compressed(tmp_path / "m.tac")
    breakdown = size_breakdown(compressed)
    assert size == (tmp_path / "m.tac").stat().st_size == sum(breakdown.values())
    tensors = compressed.header["tensors"]
    parts = sum(len(entry["parts"]) for entry in tensors.values())
    assert breakdown["padding"] < ALIGN * parts
    # every state-dict tensor once; the encoder stores its 2 distinct blocks, not 4 positions
    assert list(tensors) == list(model.state_dict())
    assert {name.split(".")[2] for name in tensors
            if name.startswith("encoder.blocks.")} == {"0", "1"}
    # no hidden fp32 copies: the fp32 values are exactly the tensors left fp32
    int8 = {f"{layer}.weight" for layer in quantization.layers}
    fp32_elements = sum(t.numel() for name, t in model.state_dict().items() if name not in int8)
    assert breakdown["float32 values"] == 4 * fp32_elements
    assert all("scale" in tensors[name]["parts"] and
               tensors[name]["parts"]["values"]["dtype"] == "int8" for name in int8)
    assert tensors["encoder.blocks.0.ffn.0.weight"]["layout"] == "bsr"
    # the weights the runner loads are what was written, bit for bit after int8 rounding
    runner, _ = load_compressed(tmp_path / "m.tac")
    for name, tensor in model.state_dict().items():
        if name in int8:
            tensor = dequantize_per_channel(*quantize_per_channel(tensor))
        assert torch.equal(runner.state_dict()[name], tensor), name


def test_weight_sharing_saves_exactly_the_bytes_of_the_extra_blocks(tmp_path: Path):
    dense = tiny_model(encoder_distinct=4, decoder_distinct=2)
    shared = tiny_model(encoder_distinct=2, decoder_distinct=1)
    dense_size = write_compressed(tmp_path / "dense.tac", dense, TOKENIZER)
    shared_size = write_compressed(tmp_path / "shared.tac", shared, TOKENIZER)
    extra = sum(p.numel() for p in dense.parameters()) - sum(p.numel() for p in shared.parameters())
    header_difference = (read_compressed(tmp_path / "dense.tac").data_start
                         - read_compressed(tmp_path / "shared.tac").data_start)
    assert dense_size - shared_size - header_difference == pytest.approx(4 * extra, abs=ALIGN * 40)


# --- end to end on real speech ---------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "shared"
    save_model_dir(tiny_model(), TOKENIZER, path)
    return path


def test_prune_quantize_report_and_the_runner_reproduces_the_reported_cer(
        tiny_corpus: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    pruned, packed = tmp_path / "pruned", tmp_path / "int8.tac"
    assert main(["compress", "prune", str(model_dir), "--data", str(tiny_corpus), "--sparsity",
                 "0.6", "--block", "4x1", "--steps", "3", "--batch-seconds", "6", "--scan",
                 "--scan-utterances", "1", "--tolerance", "100", "--layer",
                 "encoder.blocks.1.ffn.3=0.3", "--out", str(pruned)]) == 0
    record = json.loads((pruned / "pruning.json").read_text())
    assert record["block"] == "4x1"
    assert record["layers"]["encoder.blocks.1.ffn.3"] == pytest.approx(0.3, abs=0.01)
    assert "encoder.blocks.0.ffn.0" in capsys.readouterr().out      # the scan's table
    assert main(["compress", "prune", str(model_dir), "--data", str(tiny_corpus), "--sparsity",
                 "0.6", "--block", "4x1", "--steps", "0", "--scan-from",
                 str(pruned / "pruning.json"), "--tolerance", "100", "--train-utterances", "4",
                 "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "pruning.json").read_text())
    assert again["scan"] == record["scan"] and again["scan_from"].endswith("pruning.json")
    assert main(["compress", "quantize", str(pruned), "--data", str(tiny_corpus),
                 "--calibration-utterances", "4", "--qat-steps", "2", "--batch-seconds", "6",
                 "--out", str(packed)]) == 0
    assert main(["report", f"shared={model_dir}", f"sparse={pruned}", f"sparse int8={packed}",
                 "--data", str(tiny_corpus), "--out", str(tmp_path / "report"),
                 "--mode", "ctc_prefix_beam", "--beam", "3"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = report["stages"]
    assert [row["bytes"] for row in rows] == [Path(row["file"]).stat().st_size for row in rows]
    assert rows[2]["ratio"] == pytest.approx(rows[0]["bytes"] / rows[2]["bytes"])
    assert rows[0]["bytes"] > rows[1]["bytes"] > rows[2]["bytes"]
    assert (tmp_path / "report" / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "| sparse int8 |" in (tmp_path / "report" / "report.md").read_text()
    recognizer = Recognizer.load(packed, DecodeOptions(DecodeMode.CTC_PREFIX_BEAM, beam=3))
    test = evaluate(recognizer, read_data_dir(tiny_corpus / "test")).cer
    assert test.rate == rows[2]["test"]["cer"]
    assert vars(test) == {k: v for k, v in rows[2]["test"].items() if k != "cer"}


def test_bad_input_is_one_line_and_never_half_written(
        tiny_corpus: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.pt").write_bytes(b"not ours")
    one_line_error(capsys, ["compress", "prune", str(foreign), "--data", str(tiny_corpus),
                            "--sparsity", "0.5", "--out", str(tmp_path / "o")], "not a tinyasr")
    for sparsity in ("0", "1", "1.5", "-0.2"):
        one_line_error(capsys, ["compress", "prune", str(model_dir), "--data", str(tiny_corpus),
                                "--sparsity", sparsity, "--out", str(tmp_path / "o")],
                       "--sparsity", "(0, 1)")
    one_line_error(capsys, ["compress", "prune", str(model_dir), "--data", str(tiny_corpus),
                            "--sparsity", "0.5", "--block", "4by4", "--out", str(tmp_path / "o")],
                   "--block")
    one_line_error(capsys, ["compress", "prune", str(model_dir), "--data", str(tiny_corpus),
                            "--sparsity", "0.5", "--scan-from", str(foreign / "model.pt"),
                            "--out", str(tmp_path / "o")], "--scan-from")
    one_line_error(capsys, ["compress", "prune", str(model_dir), "--data", str(tiny_corpus),
                            "--sparsity", "0.5", "--train-utterances", "0",
                            "--out", str(tmp_path / "o")], "--train-utterances")
    for command, extra in (("prune", ["--sparsity", "0.5"]), ("quantize", [])):
        one_line_error(capsys, ["compress", command, str(model_dir), "--data", str(tiny_corpus),
                                *extra, "--distill-weight", "1.5", "--out", str(tmp_path / "o")],
                       "--distill-weight", "[0, 1]")
    assert not (tmp_path / "o").exists()

    out = tmp_path / "model.tac"
    out.write_bytes(b"an earlier file")
    one_line_error(capsys, ["compress", "quantize", str(model_dir), "--out", str(out)],
                   "--data", "calibration")
    empty = tmp_path / "empty_corpus"
    empty.mkdir()
    one_line_error(capsys, ["compress", "quantize", str(model_dir), "--data", str(empty),
                            "--out", str(out)], "train")
    one_line_error(capsys, ["compress", "quantize", str(foreign), "--data", str(tiny_corpus),
                            "--out", str(out)], "not a tinyasr")
    assert out.read_bytes() == b"an earlier file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    write_compressed(out, tiny_model(), TOKENIZER)
    truncated = tmp_path / "truncated.tac"
    truncated.write_bytes(out.read_bytes()[:-100])
    one_line_error(capsys, ["report", f"t={truncated}", "--data", str(tiny_corpus),
                            "--out", str(tmp_path / "r")], "truncated.tac", "past the end")
    one_line_error(capsys, ["report", f"x={foreign / 'model.pt'}", "--data", str(tiny_corpus),
                            "--out", str(tmp_path / "r")], "not a tinyasr compressed model")
