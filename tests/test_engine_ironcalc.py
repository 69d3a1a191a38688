"""IronCalc as the fifth engine (sheetgpt.engine.ironcalc_engine): every book kind passes `check --engine ironcalc`.

The books: the default bundled book (typed prompt, 18 generated rows, steering and neuron tabs), the
--no-typed-prompt book, the fixture shapes, a steered book, an exercise book a learner filled in
LibreOffice (saved by it), the default book re-saved by LibreOffice, and a sampled book (Sample
tab). The typed-prompt test types a text into Prompt!B4 through IronCalc's own input parser and
compares the continuation with `sheetgpt predict`'s (the float64 reference, in another process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sheetgpt import a1
from sheetgpt.book.tabs import guide
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.check import check_book
from sheetgpt.cli import main
from sheetgpt.engine import ironcalc_engine, libreoffice, recompute
from sheetgpt.engine.reader import read_workbook
from sheetgpt.engine.registry import available
from sheetgpt.errors import WorkbookError
from sheetgpt.tokenizer import ENDOFTEXT, Tokenizer

IRONCALC = [pytest.mark.ironcalc, pytest.mark.skipif(not available("ironcalc"), reason=ironcalc_engine.MISSING)]
pytestmark = IRONCALC
CLI = [sys.executable, "-m", "sheetgpt"]


def run(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(map(str, args)))
    assert not isinstance(result.exception, (AssertionError, KeyError, TypeError, ValueError)), result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_passes(path: Path):
    report = check_book(path, engine="ironcalc")
    assert report.stages and report.passed, [s for s in report.stages if not s.passed][:3]
    assert any(s.stage == "cached" for s in report.stages) or report.exercises  # the file's own values, proven
    return report


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """Books built by the CLI: the default, --no-typed-prompt, steered (' slow' - ' quick', strength 1), and
    sampled (the Sample tab's generator, temperature, top-k and top-p)."""
    d = tmp_path_factory.mktemp("bundled")
    out = {}
    for name, extra in (
        ("default", []),
        ("no-typed", ["--no-typed-prompt"]),
        ("steered", ["--steer", " slow", " quick", "1", "0"]),
        ("sampled", ["--sample", "--seed", "7", "--temperature", "1.5", "--top-k", "20", "--top-p", "0.9"]),
    ):
        code, stdout, stderr = run("build", "-o", d / f"{name}.xlsx", *extra)
        assert code == 0, (stdout, stderr)
        out[name] = d / f"{name}.xlsx"
    return out


@pytest.mark.parametrize("name", ["default", "no-typed", "steered", "sampled"])
def test_ironcalc_proves_the_bundled_books(bundled, name):
    code, out, err = run("check", bundled[name], "--engine", "ironcalc", "-q")
    assert code == 0, (out, err)
    assert "PASS" in out and "engine ironcalc" in out


@pytest.mark.parametrize("shape", ["micro", "one-head", "odd"])
def test_ironcalc_proves_the_fixture_shapes(book, shape):
    assert_passes(book(shape, "the cat sat").path)


def test_ironcalc_really_recomputes_and_returns_what_the_fast_engine_does(bundled):
    path = bundled["default"]
    values = ironcalc_engine.recalculate(path)
    assert values.sentinel_on_load == -1  # IronCalc loads the file's cached values ...
    assert values.sentinel == 1 / 7  # ... and evaluate() recomputed them
    assert libreoffice.SENTINEL_SHEET not in values.sheets
    fast = recompute("fast", path, read_workbook(path))
    for sheet in ("Block 1", "Predict", "Guide"):
        a, b = values.numbers[sheet], fast.numbers[sheet]
        rows, cols = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        a, b = a[:rows, :cols], b[:rows, :cols]
        assert np.array_equal(np.isnan(a), np.isnan(b)), sheet
        both = ~np.isnan(a)
        assert np.max(np.abs(a[both] - b[both])) <= 1e-13 * np.max(np.abs(b[both])), sheet
    assert values.value("Guide", "B8") == 2  # the book's own "recalculated?" cell
    assert fast.text["Prompt"] == {k: v for k, v in values.text["Prompt"].items() if k in fast.text["Prompt"]}


def test_a_text_typed_into_the_prompt_continues_like_predict(bundled):
    from sheetgpt.checkpoint import default_model_dir

    tok = Tokenizer.from_dir(default_model_dir())
    text = "Sally is slow. She walks"
    cell = a1.cell(*prompt_tab.TYPED_TEXT)
    assert cell == "B4"
    values = ironcalc_engine.recalculate(bundled["default"], edits={(prompt_tab.NAME, cell): {"type": text}})
    T = 24  # the default book's token rows
    ids = [values.describe(prompt_tab.NAME, prompt_tab.TOP + i, prompt_tab.ID_COL) for i in range(T)]
    n = len(tok.encode(text))
    args = [*CLI, "predict", "--prompt", text, "-n", str(T - n), "--no-stop", "--json"]
    want = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)["continuation_ids"]
    assert [int(i) for i in ids] == tok.encode(text) + want
    eot = tok.special[ENDOFTEXT]
    upto = want[: want.index(eot)] if eot in want else want
    # the Guide's continuation (the row after the prompt's text) is predict's text
    shown = [values.describe(guide.NAME, r, 1) for r in range(40)]
    assert text in shown
    assert shown[shown.index(text) + 1] == "".join(tok.display(i) for i in upto)


@pytest.mark.parametrize("typed", ["=1+1", "3/4"])
def test_typed_input_goes_through_ironcalcs_parser(bundled, typed):
    """A typed '=...' is a formula, as when a person types it (a plain str edit would stay text)."""
    cell = ("Guide", "Z1")
    typed_values = ironcalc_engine.recalculate(bundled["default"], edits={cell: {"type": typed}})
    as_text = ironcalc_engine.recalculate(bundled["default"], edits={cell: typed})
    assert as_text.value(*cell) == typed
    assert typed_values.value(*cell) == (2 if typed == "=1+1" else "3/4")  # IronCalc 0.9 keeps 3/4 as text


def test_bad_edits_and_a_missing_ironcalc_are_one_line(bundled, monkeypatch):
    with pytest.raises(WorkbookError, match="IronCalc takes"):
        ironcalc_engine.recalculate(bundled["default"], edits={("Prompt", "B4"): {"array": "=1"}})
    with pytest.raises(WorkbookError, match="no sheet named"):
        ironcalc_engine.recalculate(bundled["default"], edits={("Nope", "B4"): 1})
    monkeypatch.setattr(ironcalc_engine, "available", lambda: False)
    code, out, err = run("check", bundled["default"], "--engine", "ironcalc")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install 'sheetgpt[ironcalc]'" in err


def test_an_ironcalc_timeout_is_one_line(bundled):
    code, out, err = run("check", bundled["default"], "--engine", "ironcalc", "--timeout", "0.001")
    assert code == 2 and "IronCalc did not finish within 0.001 s" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ books saved by LibreOffice


@pytest.mark.libreoffice
@pytest.mark.skipif(not available("libreoffice"), reason=libreoffice.MISSING)
def test_the_default_book_resaved_by_libreoffice_passes(bundled, tmp_path):
    out = tmp_path / "lo"
    subprocess.run(
        [libreoffice.find_soffice(), f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}", "--headless",
         "--convert-to", "xlsx", "--outdir", str(out), str(bundled["default"])],
        check=True, capture_output=True, timeout=600, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert_passes(out / "default.xlsx")


@pytest.mark.libreoffice
@pytest.mark.skipif(not available("libreoffice"), reason=libreoffice.MISSING)
def test_an_exercise_book_filled_in_libreoffice_passes(book, tmp_path):
    """The GELU exercise of a micro book, typed in LibreOffice as a learner types it and saved by it."""
    built = book("micro", exercise="h.0.mlp.gelu")
    tab, gelu, fc = "Block 0", built.layout.region("h.0.mlp.gelu"), built.layout.region("h.0.mlp.c_fc")
    edits = {}
    for i in range(gelu.rows):
        for j in gelu.columns():
            v = fc.at(i, j, tab)
            formula = f"=0.5*{v}*(1+TANH(SQRT(2/PI())*({v}+0.044715*POWER({v},3))))"
            edits[(tab, a1.cell(gelu.top + i, gelu.left + j))] = {"formula": formula}
    saved = tmp_path / "filled.xlsx"
    libreoffice.recalculate(built.path, edits=edits, save_as=saved, sheets=["Guide"])
    report = assert_passes(saved)
    assert [(e["stage"], e["status"]) for e in report.exercises] == [("h.0.mlp.gelu", "pass")]
    blank = check_book(built.path, engine="ironcalc")  # the same book not filled in: not done, not a pass
    assert [(e["stage"], e["status"]) for e in blank.exercises] == [("h.0.mlp.gelu", "not done yet")]
    assert not blank.passed
