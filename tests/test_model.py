"""The SAN-M model: cross-layer weight sharing really shares storage, losses fall, masks hold,
the prefix-tree decoder scores what the batch decoder scores."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from tinyasr.model.decoding.prefix_tree import prefix_tree
from tinyasr.model.network.san_m import AsrModel, ModelConfig, shared_layer_map
from tinyasr.model.training.train import collate


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


def test_prefix_tree_numbers_each_distinct_prefix_once():
    """Shared prefixes are one node; ancestors and the FSMN history follow the tree; a
    hypothesis that is another's prefix, and the empty one, end at inner nodes."""
    tree = prefix_tree([(1, 2, 3), (1, 2, 4), (1,), ()], sos_eos=9, history_width=3)
    assert tree.tokens.tolist() == [9, 1, 2, 3, 4]
    assert tree.depths.tolist() == [0, 1, 2, 3, 3]
    assert tree.paths == [[0, 1, 2, 3], [0, 1, 2, 4], [0, 1], [0]]
    assert tree.targets == [[1, 2, 3, 9], [1, 2, 4, 9], [1, 9], [9]]
    assert tree.ancestors[4].tolist() == [True, True, True, False, True]
    assert tree.history.tolist() == [[5, 5, 0], [5, 0, 1], [0, 1, 2], [1, 2, 3], [1, 2, 4]]


@pytest.mark.parametrize("width", [1, 2, 5, 11, 40])
def test_prefix_tree_follows_its_definition(width: int):
    """Against the definitions, on n-best-like sets (shared prefixes, an empty hypothesis, a
    duplicate): one node per distinct prefix, numbered in order of first use; each node's token,
    depth, ancestors and FSMN history; each hypothesis's path; and its score, the float64 sum of
    its path's log-probs of its tokens then <eos>, one term after another, rounded once."""
    rng = np.random.default_rng(width)
    vocab, sos_eos = 9, 8
    base = rng.integers(1, vocab - 1, 12).tolist()
    hypotheses = [tuple(base[:int(rng.integers(0, 13))])
                  + tuple(rng.integers(1, vocab - 1, int(rng.integers(0, 4))).tolist())
                  for _ in range(8)]
    hypotheses += [(), hypotheses[0]]
    tree = prefix_tree(hypotheses, sos_eos, width)
    prefixes: list[tuple[int, ...]] = []
    for hypothesis in hypotheses:
        for end in range(len(hypothesis) + 1):
            if hypothesis[:end] not in prefixes:
                prefixes.append(hypothesis[:end])
    node = {prefix: index for index, prefix in enumerate(prefixes)}
    assert tree.tokens.tolist() == [p[-1] if p else sos_eos for p in prefixes]
    assert tree.depths.tolist() == [len(p) for p in prefixes]
    assert tree.ancestors.tolist() == [[u[:len(v)] == v for v in prefixes] for u in prefixes]
    assert tree.history.tolist() == [
        [node[u[:len(u) - back]] if back <= len(u) else len(prefixes)
         for back in range(width - 1, -1, -1)] for u in prefixes]
    assert tree.paths == [[node[h[:end]] for end in range(len(h) + 1)] for h in hypotheses]
    log_probs = np.log(rng.dirichlet(np.ones(vocab), len(prefixes))).astype(np.float32)
    sums = []
    for hypothesis, path in zip(hypotheses, tree.paths, strict=True):
        total = 0.0
        for row, target in zip(path, [*hypothesis, sos_eos], strict=True):
            total += float(log_probs[row, target])
        sums.append(total)
    assert tree.scores(log_probs).tolist() == np.array(sums, dtype=np.float32).tolist()


def test_tree_decoding_scores_what_the_padded_batch_scores():
    """Every hypothesis's rows of the tree decoder are its rows of the causal batch decoder:
    the same self-attention over its past, the same FSMN window (an FSMN kernel longer than
    the shared prefix, so windows cross branch points and run past the root)."""
    torch.manual_seed(1)
    model = AsrModel(tiny_config(decoder_distinct=1, fsmn_kernel=5), sos_eos=11).eval()
    hypotheses = [(3, 4, 5, 6, 7, 8), (3, 4, 5, 9), (3, 4, 10), (2,), ()]
    memory = torch.randn(1, 9, 32)
    count, longest = len(hypotheses), max(map(len, hypotheses)) + 1
    tokens = torch.full((count, longest), model.sos_eos)
    for row, hypothesis in enumerate(hypotheses):
        tokens[row, 1:len(hypothesis) + 1] = torch.tensor(hypothesis, dtype=torch.long)
    lengths = torch.tensor([len(h) + 1 for h in hypotheses])
    tree = prefix_tree(hypotheses, model.sos_eos, model.config.fsmn_kernel)
    with torch.no_grad():
        batch = model.decoder(tokens, lengths, memory)
        nodes = model.decoder.tree_forward(*map(torch.from_numpy, tree.arrays()), memory)
    for row, path in enumerate(tree.paths):
        torch.testing.assert_close(nodes[path], batch[row, :len(path)], atol=1e-5, rtol=1e-5)
