"""build refuses a book past Excel's limits (16,384 columns, 1,048,576 rows, 8,192 characters in a
formula, 32,767 in a cell): exit 2, one line naming the option to change, nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sheetgpt.a1 import MAX_CELL_CHARS, MAX_COLS, MAX_FORMULA_CHARS, MAX_ROWS
from sheetgpt.book import limits
from sheetgpt.book.layout import BookOptions
from sheetgpt.book.tabs import layout as layout_of
from sheetgpt.cli import main
from sheetgpt.config import GPT2Config
from sheetgpt.errors import SheetGPTError
from sheetgpt.prompt import Prompt
from sheetgpt.random_model import make_random_model


def refused(tmp_path, model, *args) -> str:
    out = tmp_path / "book.xlsx"
    result = CliRunner().invoke(main, ["build", "--model", str(model), "-o", str(out), *map(str, args)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert not out.exists() and not list(tmp_path.glob(".book.xlsx*")), "something was written"
    return lines[0]


def test_more_heads_than_columns_is_refused_naming_context(tmp_path):
    # 512 heads side by side, each --context 32 columns wide plus a gap: 16,898 columns
    model = make_random_model(
        tmp_path / "wide", GPT2Config(n_layer=1, n_head=512, n_embd=512, n_positions=32, vocab_size=300)
    )
    line = refused(tmp_path, model, "--prompt", "the cat", "--context", 32, "--no-typed-prompt")
    assert f"{MAX_COLS:,}" in line and "columns" in line and "--context" in line
    assert "Block 0" in line


def test_a_typed_prompt_of_1024_rows_has_a_formula_too_long(tmp_path):
    # the BPE tab's token count adds one term per word row: 1,024 rows -> 10,240 characters
    model = make_random_model(
        tmp_path / "long", GPT2Config(n_layer=1, n_head=1, n_embd=4, n_positions=1024, vocab_size=300)
    )
    line = refused(tmp_path, model, "--prompt", "the cat", "--context", 1024, "--typed-prompt")
    assert f"{MAX_FORMULA_CHARS:,}" in line and "formula" in line and "--context" in line and "BPE!" in line


def fake_prompt(T: int, text: str = "x") -> Prompt:
    return Prompt(text, [], [0] * T, ["x"] * T, T, None)


def test_a_vocabulary_past_the_last_row_is_refused_naming_the_model():
    config = GPT2Config(n_layer=1, n_head=1, n_embd=4, n_positions=8, vocab_size=MAX_ROWS + 1)
    layout = layout_of(config, BookOptions(4))
    with pytest.raises(SheetGPTError, match=f"{MAX_ROWS:,} a spreadsheet allows: .*--model"):
        limits.check(layout, fake_prompt(4))


def test_a_prompt_longer_than_a_cell_is_refused_naming_prompt():
    layout = layout_of(GPT2Config(n_layer=1, n_head=1, n_embd=4, n_positions=8, vocab_size=300), BookOptions(4))
    with pytest.raises(SheetGPTError, match=f"{MAX_CELL_CHARS:,} a cell holds: shorten --prompt"):
        limits.check(layout, fake_prompt(4, "a" * (MAX_CELL_CHARS + 1)))
    limits.check(layout, fake_prompt(4, "a" * MAX_CELL_CHARS))  # at the limit: fine
