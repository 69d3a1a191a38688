"""Greedy generation in formulas (issue 16): each row after the prompt is the argmax of the row before's logits.

The expected continuations come from `sheetgpt predict --no-stop -n N --json` (a full float64
forward pass per new token, cli_predict.continue_ids); the book's ids are what an engine recomputes
from its formulas (the fast engine, LibreOffice), never its cached values.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import lo_batch
import pytest
from proved import assert_proves_every_region

from sheetgpt import a1
from sheetgpt.book.tabs import guide
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import CACHED, check_book
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.tokenizer import ENDOFTEXT, Tokenizer

CLI = [sys.executable, "-m", "sheetgpt"]
PROMPT = "Mike is quick. He moves"
ROWS = 16  # token rows of the test books: the prompt and its continuation


def predicted(text: str, n: int, model: Path | None = None) -> list[int]:
    """`sheetgpt predict --no-stop -n N`'s greedy continuation ids."""
    args = [*CLI, "predict", "--prompt", text, "-n", str(n), "--no-stop", "--json"]
    if model is not None:
        args += ["--model", str(model)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["continuation_ids"]


@pytest.fixture(scope="module")
def bundled():
    d = default_model_dir()
    return load_model(d), Tokenizer.from_dir(d)


@pytest.fixture(scope="module")
def gen_book(bundled, tmp_path_factory):
    model, tok = bundled
    n = len(tok.encode(PROMPT))
    out = tmp_path_factory.mktemp("gen") / "gen.xlsx"
    return build_workbook(model, tok, PROMPT, out, typed_prompt=True, generate=ROWS - n)


def _ids_by_engine(path: Path, T: int) -> list[int]:
    values = evaluate(read_workbook(path))
    col = values.numbers[prompt_tab.NAME][prompt_tab.TOP : prompt_tab.TOP + T, prompt_tab.ID_COL]
    return [int(x) for x in col]


def _set_typed_text(src: Path, dst: Path, old: str, new: str) -> None:
    """A copy of the book with the shared string ``old`` (Prompt!B4's text) replaced by ``new``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/sharedStrings.xml":
                xml = data.decode("utf-8")
                hits = len(re.findall(f"<t[^>]*>{re.escape(escape(old))}</t>", xml))
                assert hits == 1, f"{old!r} is {hits} shared strings"
                xml = re.sub(
                    f"(<t[^>]*>){re.escape(escape(old))}</t>", lambda m: m.group(1) + escape(new) + "</t>", xml
                )
                data = xml.encode("utf-8")
            zout.writestr(info, data)


@pytest.mark.slow
def test_the_fast_engine_generates_predicts_continuation_and_check_passes(gen_book, bundled):
    _, tok = bundled
    n = len(tok.encode(PROMPT))
    ids = _ids_by_engine(gen_book.path, ROWS)
    assert ids[:n] == tok.encode(PROMPT)
    assert ids[n:] == predicted(PROMPT, ROWS - n)
    assert tok.decode(ids[n : n + 4]) == " quickly. He also"  # the bundled model's documented continuation
    report = check_book(gen_book.path)
    assert report.passed, [s for s in report.stages if not s.passed][:1]
    assert {"prompt.ids", "logits.argmax", "logits.all"} <= {s.stage for s in report.stages}


@pytest.mark.slow
def test_a_new_typed_prompt_rewrites_the_continuation_fast(gen_book, tmp_path):
    text = "The cat is slow. It walks"
    edited = tmp_path / "edited.xlsx"
    _set_typed_text(gen_book.path, edited, PROMPT, text)
    tok = Tokenizer.from_dir(default_model_dir())
    n = len(tok.encode(text))
    ids = _ids_by_engine(edited, ROWS)
    assert ids[n:] == predicted(text, ROWS - n)
    report = check_book(edited)  # the check's reference follows the typed text too
    recomputed = [s for s in report.stages if not s.stage.startswith(CACHED)]
    assert all(s.passed for s in recomputed), [s.stage for s in recomputed if not s.passed]
    # the file still caches the old prompt's values (no app recalculated it): the cached stages say so
    assert any(not s.passed for s in report.stages if s.stage.startswith(CACHED))


@pytest.mark.slow
def test_a_wrong_argmax_formula_fails_the_check(gen_book, tmp_path):
    """MATCH(MIN(...)) instead of MATCH(MAX(...)) in one row: that row's next token and every row after it go wrong."""
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(gen_book.path) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zout:
        sheet = f"xl/worksheets/sheet{[t.name for t in gen_book.layout.tabs].index(prompt_tab.NAME) + 1}.xml"
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == sheet:
                r = prompt_tab.TOP + 8
                xml = data.decode("utf-8")
                cell = re.search(f'<c r="{a1.cell(r, prompt_tab.NEXT_COL)}"[^>]*><f>MATCH\\(MAX', xml)
                assert cell
                xml = xml[: cell.end() - 3] + "MIN" + xml[cell.end() :]
                data = xml.encode("utf-8")
            zout.writestr(info, data)
    report = check_book(bad)
    failed = {s.stage for s in report.stages if not s.passed}
    assert {"logits.argmax", "prompt.ids"} <= failed


@pytest.mark.slow
def test_token_row_books_generate_too(bundled, tmp_path):
    """--no-typed-prompt: the rows after the prompt hold formulas, not typed tokens."""
    model, tok = bundled
    result = build_workbook(model, tok, "The cat is slow.", tmp_path / "rows.xlsx", typed_prompt=False, generate=8)
    n = len(tok.encode("The cat is slow."))
    assert len(result.ids) == n + 8
    assert _ids_by_engine(result.path, n + 8)[n:] == predicted("The cat is slow.", 8)
    assert check_book(result.path).passed


def test_generate_past_n_positions_is_refused_in_one_line(tmp_path):
    out = tmp_path / "b.xlsx"
    proc = subprocess.run(
        [*CLI, "build", "--prompt", PROMPT, "--generate", "100", "-o", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--generate" in lines[0] and "n_positions (48)" in lines[0], proc.stderr
    assert not out.exists()
    proc = subprocess.run(
        [*CLI, "build", "--generate", "3", "--context", "20", "-o", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--context or --generate" in proc.stderr


def test_generate_zero_is_todays_layout(bundled, tmp_path):
    model, tok = bundled
    result = build_workbook(model, tok, PROMPT, tmp_path / "z.xlsx", typed_prompt=True, generate=0)
    assert "logits.argmax" not in result.layout.regions
    n = len(tok.encode(PROMPT))
    assert result.ids[n:] == [tok.special[ENDOFTEXT]] * (len(result.ids) - n)


def _texts() -> list[str]:
    return [
        "Mike is quick. He moves",
        "The cat is slow. It walks",
        "Anna is happy. She",
        "The dog runs",
        "Tom is quiet. He speaks",
        "She is kind.",
        "He eats",
        "The bird is fast. It flies",
        "Mike",
        "The cat sat on the",
        "Sara is slow. She moves",
        "It is quick",
        "The man walks",
        "He also",
        "The girl is happy. She sings",
        "Tom runs quickly. He",
        "The fox is quick",
        "She moves slowly.",
        "A dog",
        "The cat is quick. It runs",
    ]


@pytest.mark.libreoffice
def test_twenty_typed_prompts_continue_like_predict_in_libreoffice(gen_book, bundled):
    """One soffice session types each text into Prompt!B4 and recalculates: the ids after the prompt, and
    the Guide's continuation text, must be `sheetgpt predict -n`'s."""
    _, tok = bundled
    layout = gen_book.layout
    T = layout.T
    ids_range = a1.span(prompt_tab.TOP, prompt_tab.ID_COL, prompt_tab.TOP + T - 1, prompt_tab.ID_COL)
    row = guide.prompt_row(layout)
    shown_range = a1.span(row, 1, row + 1, 1)
    texts = _texts()
    assert len(set(texts)) == 20
    cell = (prompt_tab.NAME, a1.cell(*prompt_tab.TYPED_TEXT))
    results, _ = lo_batch.recalculate_texts(
        gen_book.path, cell, texts, [(prompt_tab.NAME, ids_range), (guide.NAME, shown_range)]
    )
    eot = tok.special[ENDOFTEXT]
    for text, (ids_rows, shown) in zip(texts, results):
        n = len(tok.encode(text))
        want = predicted(text, T - n)
        got = [int(r[0]) for r in ids_rows]
        assert got[:n] == tok.encode(text), text
        assert got[n:] == want, text
        upto = want[: want.index(eot)] if eot in want else want
        assert shown[0][0] == "".join(tok.display(i) for i in tok.encode(text)), text
        assert shown[1][0] == "".join(tok.display(i) for i in upto), text


@pytest.mark.libreoffice
def test_check_passes_on_a_generating_book_in_libreoffice(gen_book):
    assert_proves_every_region(check_book(gen_book.path, engine="libreoffice"), gen_book.layout)
