"""What a book shows without recalculating is what a recalculation gives: every formula cell's
cached value equals the value LibreOffice and Gnumeric recompute (numbers to rtol 1e-9, texts,
booleans and errors exactly), in the default book, the --no-typed-prompt book and the
fixture shapes. The recalculated values come from those apps, not from sheetgpt's code."""

from __future__ import annotations

import math
import subprocess

import openpyxl
import pytest

from sheetgpt import a1
from sheetgpt.book.tabs import guide
from sheetgpt.book.writer import build_workbook
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.cli_book import DEFAULT_PROMPT
from sheetgpt.engine import libreoffice
from sheetgpt.engine.reader import read_workbook
from sheetgpt.tokenizer import Tokenizer

RTOL, ATOL = 1e-9, 1e-12  # ATOL: values near zero that are sums of terms of either sign
SENTINEL = (guide.NAME, guide.SENTINEL_ROW, 1)  # the one cached value that is wrong on purpose


BOOKS = [
    ("default", None, {}),
    ("default", None, {"typed_prompt": False}),
    ("micro", "the cat sat", {}),
    ("micro", "the cat sat", {"typed_prompt": None}),
    ("one-head", "the cat sat", {}),
    ("odd", "the cat sat", {}),
]
IDS = ["default", "no-typed-prompt", "micro", "micro-typed", "one-head", "odd"]


@pytest.fixture(scope="module")
def built(book, tmp_path_factory):
    cache = {}

    def make(shape, prompt, kwargs):
        key = (shape, prompt, tuple(sorted(kwargs.items())))
        if key not in cache:
            if shape == "default":
                d = default_model_dir()
                out = tmp_path_factory.mktemp("cached") / "default.xlsx"
                cache[key] = build_workbook(
                    load_model(d), Tokenizer.from_dir(d), DEFAULT_PROMPT, out, typed_prompt=kwargs.get("typed_prompt")
                ).path
            else:
                cache[key] = book(shape, prompt, **kwargs).path
        return cache[key]

    return make


def formula_cells(path) -> dict[str, list[tuple[int, int]]]:
    """Every formula cell, each cell of an array formula's range included."""
    out = {}
    for name, sheet in read_workbook(path).sheets.items():
        cells = set()
        for r, c, _text, ref in sheet.formulas:
            if ref:
                cells |= {(i, j) for i in range(ref[0], ref[2] + 1) for j in range(ref[1], ref[3] + 1)}
            else:
                cells.add((r, c))
        out[name] = sorted(cells)
    return out


def same(cached, true) -> bool:
    if isinstance(cached, bool) or isinstance(true, bool):
        return cached == true and type(cached) is type(true)
    if isinstance(cached, (int, float)) and isinstance(true, (int, float)):
        return math.isclose(cached, true, rel_tol=RTOL, abs_tol=ATOL)
    if cached is None and true == "":  # an empty text result has no cached value
        return True
    return cached == true


def mismatches(path, recalculated) -> list[str]:
    """Cells whose cached value (openpyxl data_only: numbers, texts, booleans, '#N/A' errors) is not
    ``recalculated(sheet, row, col)``."""
    cached = openpyxl.load_workbook(path, data_only=True)
    bad = []
    for sheet, cells in formula_cells(path).items():
        ws = cached[sheet]
        for r, c in cells:
            if (sheet, r, c) == SENTINEL:
                continue
            want, got = recalculated(sheet, r, c), ws.cell(r + 1, c + 1).value
            if not same(got, want):
                bad.append(f"{a1.where(sheet, r, c)}: cached {got!r}, recalculated {want!r}")
    return bad


@pytest.mark.libreoffice
@pytest.mark.parametrize(("shape", "prompt", "kwargs"), BOOKS, ids=IDS)
def test_cached_values_are_what_libreoffice_recalculates(built, shape, prompt, kwargs):
    path = built(shape, prompt, kwargs)
    values = libreoffice.recalculate(path)
    bad = mismatches(path, values.describe)
    assert not bad, f"{len(bad)} stale cached values, e.g. {bad[:5]}"
    assert values.describe(*SENTINEL) == 2.0  # the sentinel shows a recalculation happened


@pytest.mark.gnumeric
@pytest.mark.parametrize(("shape", "prompt", "kwargs"), BOOKS, ids=IDS)
def test_cached_values_are_what_gnumeric_recalculates(built, shape, prompt, kwargs, tmp_path):
    """ssconvert --recalc (Gnumeric 1.12.55 reads every cell: each has its address; the element-wise
    functions over ranges are CSE arrays) gives the same values as the cached ones."""
    path = built(shape, prompt, kwargs)
    out = tmp_path / "gnumeric.xlsx"
    subprocess.run(["ssconvert", "--recalc", str(path), str(out)], check=True, capture_output=True, timeout=600)
    recalculated = openpyxl.load_workbook(out, data_only=True)

    def value(sheet, r, c):
        v = recalculated[sheet].cell(r + 1, c + 1).value
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    bad = mismatches(path, value)
    assert not bad, f"{len(bad)} cells differ in Gnumeric, e.g. {bad[:5]}"
    assert value(*SENTINEL) == 2.0
    weights = recalculated["wte"]
    assert weights.max_row >= 2 and weights.cell(1, 1).value is not None  # weight cells were read


@pytest.mark.parametrize(("shape", "prompt", "kwargs"), [BOOKS[1], BOOKS[2]], ids=[IDS[1], IDS[2]])
def test_the_reader_sees_a_cached_value_in_every_formula_cell(built, shape, prompt, kwargs):
    """Every plain formula cell holds a cached value as sheetgpt's reader reads it, an empty text
    (``t="str"`` and ``<v></v>``) included: the regular parsing path once read ``<v></v>`` as no value."""
    missing = []
    for name, sheet in read_workbook(built(shape, prompt, kwargs)).sheets.items():
        for r, c, _text, ref in sheet.formulas:
            if ref is None and (r, c) not in sheet.cached:
                missing.append(a1.where(name, r, c))
    assert missing == []
    # the token-row Prompt tab's status cell (D3) is such an empty text: it is there, as ''
    if kwargs.get("typed_prompt") is False:
        assert read_workbook(built(shape, prompt, kwargs)).sheets["Prompt"].cached[(2, 3)] == ""
