"""Cached values the reference does not give, filled in by evaluating the book's own formulas (the BPE tab's),
and an exercise book's cold cache: "fill exercise X first" in every formula cell that waits on a blank (``cold``).

Most formula cells cache a stage of the float64 reference. The BPE tab's ~10,000 helper
cells (character codes, merge ranks, positions, ...) are not stages: their cached values are
what the formulas themselves compute, found by running the fast engine
(``sheetgpt.engine.evaluator``) on the tabs as written so far. Nothing here restates a
formula; ``tests/test_cached_values.py`` compares every cached value with LibreOffice's
recalculated one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from xlsxwriter.worksheet import (
    CellArrayFormulaTuple,
    CellBooleanTuple,
    CellFormulaTuple,
    CellNumberTuple,
    CellStringTuple,
)

from .. import a1, exercises
from ..engine.book import Book, Formulas, Sheet
from ..engine.evaluator import evaluate
from ..engine.reach import NONE, reach
from ..engine.values import BOOL, EMPTY
from .xlsx.shared import CellError, FormulaBlock

if TYPE_CHECKING:
    from ..engine.values import Values
    from .output import BookWriter


def block_formulas(block: FormulaBlock) -> list[tuple[int, int, str, tuple | None]]:
    """A FormulaBlock's cells as the reader lists formulas: (row, col, text, array range or None)."""
    out = []
    for i0, i1, j0, j1 in block.rects if block.formula is not None else ():
        out += [
            (block.top + i, block.left + j, block.formula(i, j), None) for i in range(i0, i1) for j in range(j0, j1)
        ]
    out += [(r0, c0, text, (r0, c0, r1, c1)) for r0, c0, r1, c1, text in block.arrays]
    return out


def _sheet(out: BookWriter, name: str, with_formulas: bool) -> Sheet:
    """A tab as written so far, as the engine's reader would give it (formulas only if asked)."""
    ws = out.sheets[name]
    strings = {v: k for k, v in out.wb.str_table.string_table.items()}
    rows, cols, nums, texts, bools, formulas = [], [], [], {}, {}, []
    for r, line in ws.table.items():
        for c, cell in line.items():
            kind = type(cell)
            if kind is CellNumberTuple:
                rows.append(r)
                cols.append(c)
                nums.append(float(cell.number))
            elif kind is CellStringTuple:
                texts[(r, c)] = strings[cell.string]
            elif kind is CellBooleanTuple:
                bools[(r, c)] = bool(cell.boolean)
            elif with_formulas and kind is CellFormulaTuple:
                formulas.append((r, c, cell.formula.lstrip("="), None))
            elif with_formulas and kind is CellArrayFormulaTuple:
                formulas.append((r, c, cell.formula.lstrip("="), a1.parse_range(cell.range)))
    if with_formulas:
        for block in ws.shared:
            formulas += block_formulas(block)
    cells = [(r, c) for r, c in zip(rows, cols)] + list(texts) + list(bools) + [(f[0], f[1]) for f in formulas]
    for f in formulas:
        if f[3]:
            cells.append((f[3][2], f[3][3]))
    dims = (max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1) if cells else (0, 0)
    numbers = (np.array(rows, np.int32), np.array(cols, np.int32), np.array(nums, np.float64))
    return Sheet(name, numbers=numbers, strings=texts, booleans=bools, formulas=formulas, dims=dims)


def evaluate_tab(out: BookWriter, name: str, reads: list[str]) -> Values:
    """Every formula of tab ``name`` evaluated over the constants of the tabs it ``reads``, as written so far."""
    sheets = {n: _sheet(out, n, n == name) for n in [name, *reads]}
    return evaluate(Book(list(sheets), sheets, {}), strict=True)  # sheetgpt's own formulas: none may fail


def fill(block: FormulaBlock, values: Values, sheet: str) -> None:
    """Set a block's cached values to what the engine computed: numbers, texts, booleans, errors."""
    h, w = block.values.shape
    r0, c0 = block.top, block.left
    nums = values.numbers[sheet][r0 : r0 + h, c0 : c0 + w]
    kinds = values.kinds[sheet][r0 : r0 + h, c0 : c0 + w]
    text, errors = values.text[sheet], values.errors[sheet]
    got = np.empty((h, w), dtype=object)
    for i in range(h):
        for j in range(w):
            rc = (r0 + i, c0 + j)
            if rc in errors:
                got[i, j] = CellError(errors[rc])
            elif rc in text:
                got[i, j] = text[rc]
            elif kinds[i, j] == BOOL:
                got[i, j] = bool(nums[i, j])
            elif kinds[i, j] == EMPTY:
                got[i, j] = None
            else:
                got[i, j] = float(nums[i, j])
    block.values = got


# ---------------------------------------------------------------------------- an exercise book opened cold


def formula_book(out: BookWriter, verify: str) -> Book:
    """Every tab's formulas as written so far, as the engine's reader gives them from the finished
    file (a FormulaBlock's rectangles as the shared formulas ``assemble`` writes), without values."""
    sheets = {}
    for name, ws in out.sheets.items():
        f = Formulas()
        for r, line in ws.table.items():
            for c, cell in line.items():
                if type(cell) is CellFormulaTuple:
                    f.add_plain(r, c, cell.formula.lstrip("="))
                elif type(cell) is CellArrayFormulaTuple:
                    f.arrays.append((r, c, cell.formula.lstrip("="), a1.parse_range(cell.range)))
        for block in ws.shared:
            for rect in block.rects if block.formula is not None else ():
                for i0, i1, j0, j1, text, shared in block.shared_groups(rect, verify):
                    r0, c0 = block.top + i0, block.left + j0
                    if not shared:
                        f.add_plain(r0, c0, text)
                        continue
                    rows, cols = np.mgrid[r0 : block.top + i1, c0 : block.left + j1]
                    si = len(f.shared)
                    f.add_shared_master(si, r0, c0, text)
                    f.add_shared_members(si, rows.ravel().tolist()[1:], cols.ravel().tolist()[1:])
            f.arrays += [(r0, c0, text, (r0, c0, r1, c1)) for r0, c0, r1, c1, text in block.arrays]
        sheets[name] = Sheet(name, formulas=f)
    index = {ws.index: name for name, ws in out.sheets.items()}
    names = {
        (f"{index[i]}!{n}" if i >= 0 else n): text.lstrip("=") for n, i, text, _hidden in out.wb.defined_names
    }
    return Book(list(sheets), sheets, names)


def cold(out: BookWriter, verify: str) -> None:
    """An exercise book's cached values as it shows them before the learner starts: every formula
    cell that reads an exercise's blank cells, directly or through other formulas (the book's own
    formula graph, ``engine.reach``), caches "fill exercise X first" (X: the first exercise it waits
    on, by its title); every other cell keeps its true value.

    LibreOffice recomputes every CSE array formula when it opens a book (it keeps the cached values of
    the other formulas), from the cached values of the cells it reads; an array that waits on a blank
    would then show #VALUE! (MMULT of a text). In an exercise book such an array is written
    ``IFERROR(formula, IF(COUNTA(X)=0, "fill exercise X first", formula))``: the message while exercise
    X is untouched (all its cells empty) and the formula gives an error, else the formula's own values (and errors)."""
    regions = [out.layout.region(n) for n in out.exercises]
    labels = reach(formula_book(out, verify), exercises.blanks(out.layout, list(out.exercises)))
    texts = np.array([exercises.cold_text(r) for r in regions], dtype=object)
    spans = [a1.sheet_prefix(r.tab) + r.absolute for r in regions]
    for name, ws in out.sheets.items():
        lab = labels[name]
        if (lab == NONE).all():
            continue
        H, W = lab.shape
        for r, line in ws.table.items():
            for c, cell in line.items():
                if type(cell) in (CellFormulaTuple, CellArrayFormulaTuple) and r < H and c < W and lab[r, c] != NONE:
                    line[c] = cell._replace(value=texts[lab[r, c]])
                    if type(cell) is CellArrayFormulaTuple:
                        k = lab[r, c]
                        line[c] = line[c]._replace(formula=_or_text(cell.formula, texts[k], spans[k]))
        for block in ws.shared:
            h, w = block.values.shape
            sub = np.full((h, w), NONE, lab.dtype)
            part = lab[block.top : block.top + h, block.left : block.left + w]
            sub[: part.shape[0], : part.shape[1]] = part
            waits = sub != NONE
            if waits.any():
                values = block.values.astype(object)
                values[waits] = texts[sub[waits]]
                block.values = values
                arrays = []
                for r0, c0, r1, c1, text in block.arrays:
                    k = sub[r0 - block.top, c0 - block.left]
                    arrays.append((r0, c0, r1, c1, text if k == NONE else _or_text(text, texts[k], spans[k])))
                block.arrays = arrays


def _or_text(formula: str, text: str, exercise: str) -> str:
    """``formula`` (no '='), giving ``text`` where it gives an error while every cell of ``exercise`` is empty."""
    f, quoted = formula.lstrip("="), text.replace('"', '""')
    return f'IFERROR({f},IF(COUNTA({exercise})=0,"{quoted}",{f}))'
