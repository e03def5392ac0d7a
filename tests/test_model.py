"""The SAN-M model: cross-layer weight sharing really shares storage, losses fall, masks hold."""

from __future__ import annotations

import io

import pytest
import torch

from tinyasr.model.san_m import AsrModel, ModelConfig, shared_layer_map
from tinyasr.model.train import collate


def tiny_config(**overrides) -> ModelConfig:
    values = dict(vocab_size=12, d_model=32, attention_heads=2, ffn_dim=64,
                  subsampling_channels=8, encoder_layers=6, encoder_distinct=6,
                  decoder_layers=2, decoder_distinct=2, dropout=0.0)
    return ModelConfig(**{**values, **overrides})


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def saved_bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def test_layer_map_groups_consecutive_positions():
    assert shared_layer_map(12, 2) == [0] * 6 + [1] * 6
    assert shared_layer_map(6, 3) == [0, 0, 1, 1, 2, 2]
    assert shared_layer_map(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        shared_layer_map(4, 5)


def test_weight_sharing_stores_each_block_once():
    dense = AsrModel(tiny_config(), sos_eos=11)
    shared = AsrModel(tiny_config(encoder_distinct=2, decoder_distinct=1), sos_eos=11)
    encoder_block = parameter_count(dense.encoder.blocks[0])
    decoder_block = parameter_count(dense.decoder.blocks[0])
    assert parameter_count(dense) - parameter_count(shared) == 4 * encoder_block + decoder_block
    # The state dict (and so every file written) holds only the distinct blocks.
    block_keys = {k.split(".")[2] for k in shared.state_dict() if k.startswith("encoder.blocks.")}
    assert block_keys == {"0", "1"}
    ratio = saved_bytes(shared) / saved_bytes(dense)
    expected = parameter_count(shared) / parameter_count(dense)
    assert ratio == pytest.approx(expected, rel=0.05)


def test_shared_positions_run_the_same_weights():
    model = AsrModel(tiny_config(encoder_distinct=2), sos_eos=11)
    assert model.encoder.layer_map == [0, 0, 0, 1, 1, 1]
    blocks = [model.encoder.blocks[i] for i in model.encoder.layer_map]
    assert blocks[0] is blocks[2] and blocks[3] is blocks[5] and blocks[0] is not blocks[3]


def test_padding_does_not_change_the_encoder_output():
    torch.manual_seed(0)
    model = AsrModel(tiny_config(encoder_distinct=2), sos_eos=11).eval()
    short = torch.randn(1, 60, 80)
    padded = torch.cat([short, torch.randn(1, 40, 80)], dim=1)
    alone = model.encoder(short)
    frame_mask = torch.zeros(1, 24, dtype=torch.bool)
    frame_mask[:, : alone.shape[1]] = True
    batched = model.encoder(padded, frame_mask)[:, : alone.shape[1]]
    # Conv subsampling sees a few padded frames at the edge; interior frames must agree exactly.
    torch.testing.assert_close(batched[:, :-2], alone[:, :-2], atol=1e-5, rtol=1e-5)


def test_joint_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = AsrModel(tiny_config(encoder_distinct=2, decoder_distinct=1), sos_eos=11)
    fbanks = [torch.randn(120, 80), torch.randn(90, 80)]
    batch = collate(fbanks, [[2, 3, 4, 5], [6, 7, 8]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _ = model.loss(*batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_distillation_pulls_the_student_onto_its_teacher():
    """The KL term is zero against an identical teacher, and training on it alone (weight 1)
    brings a shared student's CTC and decoder distributions close to a dense teacher's."""
    torch.manual_seed(0)
    teacher = AsrModel(tiny_config(), sos_eos=11).eval()
    student = AsrModel(tiny_config(encoder_distinct=2, decoder_distinct=1), sos_eos=11)
    batch = collate([torch.randn(120, 80), torch.randn(90, 80)], [[2, 3, 4, 5], [6, 7, 8]])

    _, parts = teacher.loss(*batch, teacher=teacher, distill_weight=0.5)
    assert parts["distill"] == pytest.approx(0.0, abs=1e-5)

    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    distances = []
    for _ in range(40):
        loss, parts = student.loss(*batch, teacher=teacher, distill_weight=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        distances.append(parts["distill"])
    assert distances[-1] < 0.2 * distances[0]
