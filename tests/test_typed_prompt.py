"""Typed prompt: the BPE tab's formulas tokenize any text typed into Prompt!B4 exactly like our tokenizer.

One book (a small random model with a BPE learned on the README) is recalculated by LibreOffice
for 200+ texts in ONE soffice session (libreoffice.recalculate_texts); the ids and the
predicted token must equal the tokenizer's ids and the float64 reference's argmax. Texts
beyond the book's limits must show their message and no prediction.
"""

from __future__ import annotations

import random

import lo_batch
import numpy as np
import pytest
from proved import assert_proves_every_region

from sheetgpt import a1
from sheetgpt.book.tabs import bpe, predict
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import check_book
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.prompt import make_prompt, read_typed_prompt
from sheetgpt.reference import gpt2
from sheetgpt.tokenizer import Tokenizer

CONTEXT = 24


@pytest.fixture(scope="module")
def small_model():
    """The bundled teaching model (2 blocks, 550-token BPE learned by bpe_learn on its corpus)."""
    return default_model_dir()


@pytest.fixture(scope="module")
def typed_book(small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("typed-book") / "typed.xlsx"
    return build_workbook(
        load_model(small_model),
        Tokenizer.from_dir(small_model),
        "Mike's quick. He moves",
        out,
        typed_prompt=True,
        context=CONTEXT,
    )


WORDS = [
    "the",
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "Mike",
    "moves",
    "spreadsheet",
    "formula",
    "GPT",
    "token",
    "café",
    "naïve",
    "Zürich",
    "façade",
    "ÀÉÎÕÜ",
    "déjà",
    "vu",
    "über",
    "señor",
    "œuvre",
    "Ærø",
    "ß",
    "µ",
    "x",
    "a",
    "I",
    "it",
    "is",
    "cells",
    "LibreOffice",
    "hello",
    "WORLD",
]
PUNCT = [
    ".",
    ",",
    "!",
    "?",
    ";",
    ":",
    "-",
    "--",
    "...",
    "(",
    ")",
    '"',
    "'",
    "''",
    "%",
    "$",
    "&",
    "#",
    "@",
    "/",
    "«",
    "»",
    "¿",
    "¡",
    "©",
    "°",
    "±",
    "×",
    "÷",
    "§",
]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll", "'x"]
SPACES = [" ", " ", " ", "  ", "   ", "\t", "\n", " \n", "\n\n", " \t ", "\u00a0"]
DIGITS = ["0", "7", "42", "2024", "3.14", "1,000", "½", "²", "¹", "10%"]


def _texts(n: int, seed: int = 0) -> list[str]:
    """Varied short texts: prose, punctuation, digits, contractions (any case), runs of spaces, Latin-1."""
    rnd = random.Random(seed)
    fixed = [
        "Hello world",
        "It's 'S fine",
        "don't  stop",
        "I'M here",
        "they're we've I'll he'd",
        "a  b   c",
        "  leading",
        "trailing  ",
        "tab\tseparated",
        "new\nline",
        "x\n\ny",
        "3.14159",
        "café au lait",
        "ÀÉÎÕÜ àéîõü",
        "''s",
        "?'s",
        " 's",
        "Mike's quick. He moves",
        "!!!",
        "a",
        " ",
        "   ",
        "x  ",
        "é",
        "1 2  3",
        "x\n's",
        "'s's",
        "it'lll",
        "\n\nabc",
        "a \n b",
        "x\u00a0'd",
        "x  'd",
        "'re'",
        "é's",
    ]
    out = list(fixed)
    while len(out) < n:
        parts = []
        for _ in range(rnd.randint(1, 7)):
            kind = rnd.random()
            if kind < 0.45:
                parts.append(rnd.choice(WORDS))
            elif kind < 0.6:
                parts.append(rnd.choice(PUNCT))
            elif kind < 0.72:
                parts.append(rnd.choice(CONTRACTIONS))
            elif kind < 0.85:
                parts.append(rnd.choice(DIGITS))
            parts.append(rnd.choice(SPACES) if rnd.random() < 0.8 else "")
        text = "".join(parts)
        if rnd.random() < 0.3:
            text = text.strip()
        if text:
            out.append(text)
    return out


TEXT_CELL = (prompt_tab.NAME, a1.cell(*prompt_tab.TYPED_TEXT))


def _ranges(layout):
    ids = layout.region("bpe.ids")
    status = a1.cell(bpe.BpeSheet.STATUS, 1)
    top = layout.region("predict.probs").top
    return [
        (bpe.NAME, a1.span(ids.top, ids.left, ids.bottom, ids.left, (False, False), (False, False))),
        (bpe.NAME, f"{status}:{status}"),
        (predict.NAME, a1.span(top, predict.ID_COL, top, predict.ID_COL, (False, False), (False, False))),
        (
            prompt_tab.NAME,
            a1.span(*prompt_tab.PREDICT_AFTER, *prompt_tab.PREDICT_AFTER, (False, False), (False, False)),
        ),
    ]


@pytest.mark.libreoffice
def test_typed_texts_tokenize_and_predict_like_the_reference(typed_book, small_model):
    tok = Tokenizer.from_dir(small_model)
    layout = typed_book.layout
    model = load_model(small_model)
    fitting = [
        t
        for t in _texts(400)
        if read_typed_prompt(t, tok, layout.typed, layout.T).problem(layout.typed, layout.T) is None
    ]
    texts = fitting[:220]
    assert len(texts) >= 200
    results, _ = lo_batch.recalculate_texts(typed_book.path, TEXT_CELL, texts, _ranges(layout))
    pad = tok.vocab_size - 1
    for text, (ids_rows, status, top, c3) in zip(texts, results):
        ids = tok.encode(text)
        want = ids + [pad] * (layout.T - len(ids))
        assert [r[0] for r in ids_rows] == want, text
        assert status[0][0].startswith("OK:"), (text, status)
        assert c3[0][0] == len(ids) - 1, text
        logits = gpt2(want, model.params, model.config)["logits"][len(ids) - 1]
        assert top[0][0] == int(np.argmax(logits)), text


@pytest.mark.libreoffice
def test_texts_beyond_the_limits_show_a_message(typed_book):
    layout = typed_book.layout
    lim = layout.typed
    cases = {
        "": "Type some text",
        "x" * (lim.max_chars + 1): "Too long",
        "snow ☃ man": "cannot classify",
        "日本": "cannot classify",
        "a<|endoftext|>b": "special token",
        " a" * (lim.max_words + 1): "Too many words",
        "x" * (lim.max_word_bytes + 1): "bytes",
        "é" * (lim.max_word_bytes // 2 + 1): "bytes",  # Latin-1 letters are 2 UTF-8 bytes
        "§§§§§§§§ §§§§§§§ §§§§§§§": "Too many tokens",  # 3 words of 16 bytes, about 46 tokens
    }
    results, _ = lo_batch.recalculate_texts(typed_book.path, TEXT_CELL, list(cases), _ranges(layout))
    for (text, expect), (ids_rows, status, top, c3) in zip(cases.items(), results):
        message = status[0][0]
        assert expect in message, (text, message)
        if text:
            assert "sheetgpt build --prompt" in message
        assert all(r[0] == "#N/A" for r in ids_rows), text  # no ids, hence no silent prediction
        assert c3[0][0] == "#N/A" and isinstance(top[0][0], str) and top[0][0].startswith(("#", "Err")), text


@pytest.mark.slow
def test_check_passes_on_a_typed_book_fast(typed_book):
    report = check_book(typed_book.path)
    assert report.passed, [s for s in report.stages if not s.passed][:1]
    assert {"bpe.class", "bpe.word", "bpe.count", "bpe.ids"} <= {s.stage for s in report.stages}


@pytest.mark.libreoffice
def test_check_passes_on_a_typed_book_libreoffice(typed_book):
    assert_proves_every_region(check_book(typed_book.path, engine="libreoffice"), typed_book.layout)


def test_make_prompt_limits_and_refusals(small_model):
    from sheetgpt.errors import SheetGPTError

    tok = Tokenizer.from_dir(small_model)
    prompt = make_prompt("the cat", tok, 32, typed=None)
    limits = prompt.typed
    assert len(prompt.ids) == 16 and limits.max_words == 16 and limits.max_chars == 64
    assert limits.n_merges == len(tok.merges)
    assert make_prompt("the cat", tok, 32, typed=False).typed is None
    assert len(make_prompt("the cat", tok, 32, typed=False).ids) == len(tok.encode("the cat"))
    assert make_prompt("日本", tok, 32, typed=None).typed is None  # auto: falls back to token rows
    with pytest.raises(SheetGPTError, match="--no-typed-prompt"):
        make_prompt("日本", tok, 32, typed=True)


@pytest.mark.slow
def test_check_passes_on_a_typed_micro_book_with_the_formulas_engine(model_dir, tmp_path):
    """The third engine: the BPE tab's formulas also compute GPT-2's tokenization in `formulas`."""
    d = model_dir("micro", 3)
    result = build_workbook(
        load_model(d), Tokenizer.from_dir(d), "a cab", tmp_path / "typed-micro.xlsx", typed_prompt=True, context=5
    )
    assert result.layout.typed is not None
    report = check_book(result.path, engine="formulas")
    assert report.passed, [(s.stage, s.first_bad) for s in report.stages if not s.passed]
    assert {"bpe.class", "bpe.word", "bpe.count", "bpe.ids"} <= {s.stage for s in report.stages}
