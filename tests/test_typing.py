"""Text stays text: awkward inputs TYPED into Prompt!B4 of the default book tokenize like `sheetgpt tokenize`.

Each input goes through LibreOffice's cell input parser with the cell's number format (UNO
``FormulaLocal``), not ``setString``; as a witness it is also typed through the input line
(``.uno:EnterString``, what typing and Enter do) into a scratch cell of the same format, and both
must hold the same thing. Then the book is recalculated and the Prompt tab's id column must equal
the tokenizer's ids of what the cell holds. One soffice session for all inputs (libreoffice.type_texts).
"""

from __future__ import annotations

import subprocess
import sys

import lo_batch
import pytest

from sheetgpt import a1
from sheetgpt.book.tabs import bpe
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.checkpoint import default_model_dir
from sheetgpt.tokenizer import Tokenizer

pytestmark = pytest.mark.libreoffice

ROWS = 16  # token rows of the bundled model's typed-prompt book with --generate 0 (at least 16)
TEXT_CELL = (prompt_tab.NAME, a1.cell(*prompt_tab.TYPED_TEXT))

# What a person would expect a Text cell to keep exactly as typed (in General, LibreOffice converts
# every one of these: a date, a number, a formula, a boolean, an error, a time...).
LITERAL = [
    # dates
    "3/4",
    "2024-01-05",
    "1-Jan",
    "Jan 5",
    "12/31/2024",
    "5.1.2024",
    # fractions
    "1/2",
    "1 1/2",
    # exponents
    "1e5",
    "2E-3",
    "1E+10",
    # percentages
    "50%",
    "12.5%",
    # currency (Latin-1)
    "$5",
    "£3.50",
    "$1,000.00",
    "(5)",
    # leading = + - @
    "=1+1",
    "=SUM(A1:A2)",
    "+3",
    "-x",
    "-5",
    "@sum",
    "=",
    "+",
    # leading and trailing spaces
    " x ",
    "  leading",
    "trailing  ",
    " 3/4",
    "1e5 ",
    # booleans and errors
    "TRUE",
    "FALSE",
    "true",
    "#N/A",
    "#DIV/0!",
    "#VALUE!",
    # numbers with thousands separators, plain numbers
    "1,000",
    "1,000,000",
    ".5",
    "007",
    "3.14",
    # times
    "12:30",
    "12:30:45",
    "1:05 PM",
    # ordinary sentences
    "Mike is quick. He moves",
    "The cat sat on the mat.",
    "It's 3/4 done!",
    "He moves 50%.",
    "café déjà vu",
]
# A leading apostrophe: in General it is the "keep as text" escape and is dropped; in a Text cell
# LibreOffice 7.4 keeps it (measured through the input line), so the book tokenizes it too.
APOSTROPHE = ["'q", "'hello", "'3/4", "''"]
# Currency signs outside Latin-1: the cell keeps the text, the BPE tab cannot classify the character.
NOT_LATIN1 = ["€5", "5 €"]
INPUTS = LITERAL + APOSTROPHE + NOT_LATIN1


@pytest.fixture(scope="module")
def default_book(tmp_path_factory):
    """The default bundled book as `python -m sheetgpt build --generate 0` writes it: the rows after
    the prompt are padding, so every id row is the tokenizer's (tests/test_generate.py types prompts
    into the generating default book)."""
    out = tmp_path_factory.mktemp("typing") / "default.xlsx"
    cmd = [sys.executable, "-m", "sheetgpt", "build", "--generate", "0", "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _ranges():
    ids = a1.span(prompt_tab.TOP, prompt_tab.ID_COL, prompt_tab.TOP + ROWS - 1, prompt_tab.ID_COL)
    status = a1.cell(bpe.BpeSheet.STATUS, 1)
    return [(prompt_tab.NAME, ids), (bpe.NAME, f"{status}:{status}")]


def test_awkward_inputs_typed_into_the_text_cell_tokenize_like_sheetgpt_tokenize(default_book):
    assert len(INPUTS) >= 40
    typed = lo_batch.type_texts(default_book, TEXT_CELL, INPUTS, _ranges())
    assert typed.number_format == "@"  # Prompt!B4 is a Text cell
    tok = Tokenizer.from_dir(default_model_dir())
    pad = tok.vocab_size - 1
    for text, held, kind, line, (ids_rows, status) in zip(
        INPUTS, typed.held, typed.kinds, typed.input_line, typed.results
    ):
        # Typed into the cell, it holds what typing into the input line gives: the same parser.
        assert (held, kind) == line, text
        # A Text cell keeps every input as the text typed, apostrophes and spaces included.
        assert kind == "TEXT", (text, kind)
        assert held == text, (text, held)
        message = status[0][0]
        if text in NOT_LATIN1:
            assert "cannot classify" in message, (text, message)
            assert all(r[0] == -1 for r in ids_rows), (text, ids_rows)  # -1: no token, no id
            continue
        ids = tok.encode(held)  # what `sheetgpt tokenize` prints for the same string
        assert message.startswith("OK:"), (text, message)
        assert [r[0] for r in ids_rows] == ids + [pad] * (ROWS - len(ids)), text


def test_typing_goes_through_the_input_parser(tmp_path):
    """The same entry path in a General cell converts what a Text cell keeps: it is typing, not setString."""
    import xlsxwriter

    path = tmp_path / "general.xlsx"
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("Prompt")
    ws.write_string("B4", "x")
    ws.write_formula("C4", "=ISTEXT(B4)", None, True)
    wb.close()
    texts = ["3/4", "1e5", "50%", "=1+1", "TRUE", "'q", "'3/4", "+3", "hello"]
    typed = lo_batch.type_texts(path, ("Prompt", "B4"), texts, [("Prompt", "C4")], number_format="General")
    assert typed.number_format == "General"
    assert list(zip(typed.held, typed.kinds)) == list(typed.input_line)
    kinds = dict(zip(texts, typed.kinds))
    assert kinds == {
        "3/4": "VALUE",
        "1e5": "VALUE",
        "50%": "VALUE",
        "=1+1": "FORMULA",
        "TRUE": "VALUE",
        "'q": "TEXT",
        "'3/4": "TEXT",
        "+3": "VALUE",
        "hello": "TEXT",
    }
    held = dict(zip(texts, typed.held))
    assert held["3/4"] != "3/4"  # a date (and typing 1e5 even gives the cell a scientific format: 2.00E+00 for =1+1)
    # The apostrophe escapes only what would not be text anyway: '3/4 is the text 3/4, 'q stays 'q.
    assert held["'3/4"] == "3/4" and held["'q"] == "'q"
    assert [r[0][0][0] for r in typed.results] == [False] * 5 + [True, True, False, True]
