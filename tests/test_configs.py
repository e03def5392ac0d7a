"""Every recipe in model/configs builds its model; the cost table counts what the model holds;
AISHELL-style transcripts (spaces between Chinese words) train and score without the spaces."""

from pathlib import Path

import pytest

from tinyasr.model.decoding.metrics import char_errors
from tinyasr.model.network.san_m import AsrModel, ModelConfig
from tinyasr.model.network.tokenizer import Tokenizer, normalize_text
from tinyasr.model.training import train_cost
from tinyasr.model.training.train import Recipe

CONFIGS = sorted(train_cost.CONFIG_DIR.glob("*.json"))


def test_the_paper_configs_are_there():
    names = {path.stem for path in CONFIGS}
    assert {"shared", "dense", "aishell1", "aishell2", "aishell2-dense"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_builds_and_cost_counts_its_parameters(path: Path):
    recipe = Recipe.load(path)
    config = ModelConfig.from_dict({**recipe.model, "vocab_size": train_cost.VOCAB[path.stem]})
    model = AsrModel(config, sos_eos=config.vocab_size - 1)
    held = sum(tensor.numel() for tensor in model.state_dict().values())
    assert config.parameter_count() == held
    assert train_cost.model_config(path).parameter_count() == held
    assert held < train_cost.int8_bytes(model) < 4 * held / 3


def test_cost_of_the_shipped_recipe():
    cost = train_cost.cost(train_cost.CONFIG_DIR / "shared.json")
    model = train_cost.build(train_cost.CONFIG_DIR / "shared.json")
    assert cost.parameters == sum(t.numel() for t in model.state_dict().values())
    assert cost.fp32_bytes == 4 * cost.parameters
    assert 1e7 < cost.forward_flops_per_second < 1e9
    assert cost.gpu_hours(100.0) == pytest.approx(
        1000 * 3600 * train_cost.PAPER_EPOCHS * cost.forward_flops_per_second * 3 / 100e12 / 3600)
    assert "| shared |" in train_cost.table([cost], (100.0,))


def test_aishell_word_spaces_are_not_tokens_nor_scored():
    aishell1 = "而 对 楼市 成交 抑制 作用 最 大 的 限 购"
    assert normalize_text(aishell1) == "而对楼市成交抑制作用最大的限购"
    assert " " not in Tokenizer.from_texts([aishell1, "打开 IPHONE 的 设置"]).tokens
    assert normalize_text("打开 IPHONE 的 设置") == "打开iphone的设置"
    assert normalize_text("turn on  the Lights") == "turn on the lights"   # English keeps spaces
    counts = char_errors(normalize_text(aishell1),
                         normalize_text("而对 楼市成交抑制作用最大的限购"))
    assert (counts.errors, counts.reference_length) == (0, 15)
