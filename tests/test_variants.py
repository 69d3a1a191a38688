"""GPT-2-family variants: the real distilgpt2 and gpt2-medium config.json files load and build.

The configs (tests/fixtures/configs, see its README) are read as they are, extra keys and all.
Their books are built from random weights with the configs' own block counts and heads, and
only n_embd (4 columns a head), vocab_size (300) and n_positions/n_ctx (32) shrunk, so that a
24-block book stays a test of seconds; the check then proves each book against the reference.
The full shapes' costs are in BENCHMARKS.md ("GPT-2 family variants").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sheetgpt.book.writer import build_workbook
from sheetgpt.check import check_book
from sheetgpt.checkpoint import load_model
from sheetgpt.config import GPT2Config
from sheetgpt.random_model import random_params, write_checkpoint, write_tokenizer
from sheetgpt.tokenizer import Tokenizer

CONFIGS = Path(__file__).parent / "fixtures" / "configs"

REAL = {
    "distilgpt2": GPT2Config(n_layer=6, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257),
    "gpt2-medium": GPT2Config(n_layer=24, n_head=16, n_embd=1024, n_positions=1024, vocab_size=50257),
}


@pytest.mark.parametrize("name", REAL)
def test_the_real_config_loads_with_its_extra_keys(name):
    raw = json.loads((CONFIGS / f"{name}.json").read_text())
    assert {"n_ctx", "activation_function", "architectures", "task_specific_params"} <= raw.keys()
    assert GPT2Config.from_json(CONFIGS / f"{name}.json") == REAL[name]
    assert REAL[name].head_dim == 64


def shrunk(name: str) -> tuple[dict, GPT2Config]:
    """The real config.json with only n_embd, vocab_size, n_positions and n_ctx made small."""
    raw = json.loads((CONFIGS / f"{name}.json").read_text())
    raw |= {"n_embd": 4 * raw["n_head"], "vocab_size": 300, "n_positions": 32, "n_ctx": 32}
    return raw, GPT2Config.from_dict(raw)


@pytest.mark.parametrize("name", REAL)
@pytest.mark.slow
def test_a_book_of_the_variant_shape_builds_and_checks(name, tmp_path):
    raw, config = shrunk(name)
    assert (config.n_layer, config.n_head) == (REAL[name].n_layer, REAL[name].n_head)
    d = write_checkpoint(tmp_path / name, config, random_params(config, seed=1))
    write_tokenizer(d, config.vocab_size)
    (d / "config.json").write_text(json.dumps(raw, indent=2) + "\n")  # the hub's file, shrunk; not ours
    model = load_model(d)
    assert model.config == config
    result = build_workbook(model, Tokenizer.from_dir(d), "the cat sat", tmp_path / f"{name}.xlsx")
    blocks = [t.name for t in result.layout.tabs if t.name.startswith("Block ")]
    assert blocks == [f"Block {i}" for i in range(config.n_layer)]
    assert f"h.{config.n_layer - 1}.mlp.c_proj.w" in {t.name for t in result.layout.tabs}
    report = check_book(result.path)
    assert report.passed, [s for s in report.stages if not s.passed][:1]
    assert sum(s.tab == f"Block {config.n_layer - 1}" for s in report.stages) > 0
