"""An exercise book before the learner starts: what its cached values must be, and their proof.

The file caches what the book shows before anything is recalculated (LibreOffice opening an .xlsx,
Excel's Protected View, previewers, pandas/openpyxl): "fill exercise X first" (``exercises.cold_text``,
X the first exercise it waits on, by its title) in every formula cell that reads an exercise's blank
cells, directly or through other formulas, and the true value in every other formula cell. Which cells
wait is read from the book's own formulas (``engine.reach``), here from the file as ``check`` reads
it; the writer finds them the same way from the formulas it writes (``book.fill_cached.cold``).
``prove`` is ``check``'s "cached" stage of each tab of such a book.
"""

from __future__ import annotations

import numpy as np

from . import a1, exercises
from .book.layout import Layout
from .engine.cached import file_values
from .engine.reach import NONE, reach
from .engine.reader import Book
from .engine.values import Values


def unfilled(book: Book, layout: Layout, names: list[str]) -> bool:
    """Whether an exercise book (``names``: its exercises) is as built: no exercise cell holds
    anything (a formula, a number, a text)."""
    for name in names:
        r = layout.region(name)
        sheet = book.sheets.get(r.tab)
        if sheet is None:
            return False
        for rr, cc, _t, rng in sheet.formulas:
            r0, c0, r1, c1 = rng if rng is not None else (rr, cc, rr, cc)
            if r0 <= r.bottom and r.top <= r1 and c0 <= r.right and r.left <= c1:
                return False
        rows, cols, _ = sheet.numbers
        if ((rows >= r.top) & (rows <= r.bottom) & (cols >= r.left) & (cols <= r.right)).any():
            return False
        for table in (sheet.strings, sheet.booleans, sheet.errors):
            if any(r.top <= i <= r.bottom and r.left <= j <= r.right for i, j in table):
                return False
    return True


def waiting(book: Book, layout: Layout, names: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """({sheet: label grid}, texts): each cell that reads exercise k's blanks (the first such k) is
    labelled k (``engine.reach``); texts[k] is what it must cache."""
    labels = reach(book, exercises.blanks(layout, names))
    return labels, [exercises.cold_text(layout.region(n)) for n in names]


def formula_grid(book: Book, sheet: str) -> np.ndarray:
    """Boolean grid of the cells that hold a formula (every cell of a CSE range)."""
    s = book.sheets[sheet]
    cells = [(r, c, r, c) if ref is None else ref for r, c, _t, ref in s.formulas]
    H = max([s.dims[0]] + [x[2] + 1 for x in cells])
    W = max([s.dims[1]] + [x[3] + 1 for x in cells])
    grid = np.zeros((H, W), bool)
    for r0, c0, r1, c1 in cells:
        grid[r0 : r1 + 1, c0 : c1 + 1] = True
    return grid


def prove(
    sheet: str,
    layout: Layout,
    book: Book,
    values: Values,
    trace: dict,
    labels: dict[str, np.ndarray],
    texts: list[str],
    rtol: float,
    skip=(),
) -> dict | None:
    """The cached values of one tab of an exercise book nobody has filled yet, against what it must
    show: the text where a cell waits on a blank; elsewhere the reference in a stage's cells and, in
    the other formula cells, what the engine recomputes. Every formula cell must cache a value.
    {"cells", "max_abs", "max_rel", "passed", "first_bad"}, or None for a tab without formulas.
    ``skip``: (sheet, row, col) of cells whose cache differs on purpose (the recalculation sentinel)."""
    grid = formula_grid(book, sheet)
    if not grid.any():
        return None
    cached = file_values(book, [sheet])
    nums, text, errors = cached.numbers[sheet], cached.text[sheet], cached.errors[sheet]
    H, W = grid.shape
    lab = np.full((H, W), NONE, np.int32)
    part = labels.get(sheet, lab)[:H, :W]
    lab[: part.shape[0], : part.shape[1]] = part
    num = np.full((H, W), np.nan)
    num[: min(H, nums.shape[0]), : min(W, nums.shape[1])] = nums[:H, :W]
    todo = grid.copy()
    for r, c in ((r, c) for s, r, c in skip if s == sheet):
        if r < H and c < W:
            todo[r, c] = False
    out = {"cells": int(todo.sum()), "max_abs": 0.0, "max_rel": 0.0, "passed": True, "first_bad": None}
    bad: list[tuple[int, int, object, object]] = []

    def got(r: int, c: int):
        return cached.describe(sheet, r, c) if (r, c) in text or (r, c) in errors or num[r, c] == num[r, c] else None

    # a cell that waits on a blank: the text naming the first exercise it waits on
    for r, c in np.argwhere(todo & (lab != NONE)).tolist():
        if text.get((r, c)) != texts[lab[r, c]] or (r, c) in errors:
            bad.append((r, c, got(r, c), texts[lab[r, c]]))
    todo &= lab == NONE
    # a stage's cell: the reference (a masked cell: empty text)
    for region in (r for r in layout.regions.values() if r.tab == sheet):
        want = region.grid(trace[region.name])
        box = np.zeros((region.rows, region.width), bool)
        sub = todo[region.top : region.bottom + 1, region.left : region.right + 1]
        box[: sub.shape[0], : sub.shape[1]] = sub
        box[:, [j for j in range(region.width) if j not in set(region.columns())]] = False
        have = np.full(box.shape, np.nan)
        s = num[region.top : region.bottom + 1, region.left : region.right + 1]
        have[: s.shape[0], : s.shape[1]] = s
        scale = float(np.nanmax(np.abs(want))) if np.isfinite(want).any() else 1.0
        err = np.where(np.isnan(want), 0.0, np.abs(have - want))
        err = np.where(np.isnan(err), np.inf, err)
        blank = np.isnan(want)
        empty = np.zeros(box.shape, bool)
        for i, j in np.argwhere(box & blank).tolist():
            empty[i, j] = text.get((region.top + i, region.left + j)) == "" and np.isnan(have[i, j])
        wrong = box & ((~blank & (err > rtol * (scale or 1.0))) | (blank & ~empty))
        if (box & ~blank).any():
            out["max_abs"] = max(out["max_abs"], float(err[box & ~blank].max()))
            out["max_rel"] = max(out["max_rel"], float(err[box & ~blank].max()) / (scale or 1.0))
        for i, j in np.argwhere(wrong).tolist():
            r, c = region.top + i, region.left + j
            bad.append((r, c, got(r, c), "" if blank[i, j] else float(want[i, j])))
        todo[region.top : region.bottom + 1, region.left : region.right + 1] &= ~box[: sub.shape[0], : sub.shape[1]]
    # any other formula cell: what the engine recomputes
    scale = values.numbers.get(sheet)
    scale = float(np.nanmax(np.abs(scale))) if scale is not None and np.isfinite(scale).any() else 1.0
    for r, c in np.argwhere(todo).tolist():
        want, have = values.describe(sheet, r, c), got(r, c)
        same = want == have or (
            isinstance(want, float) and isinstance(have, float) and abs(want - have) <= rtol * (scale or 1.0)
        )
        if want is None and have == "":
            same = True  # a formula that gives empty text, cached as Excel writes it
        if not same:
            bad.append((r, c, have, want))
    if bad:
        r, c, have, want = min(bad)
        out["passed"] = False
        out["first_bad"] = {
            "cell": f"{a1.sheet_prefix(sheet)}{a1.cell(r, c)}",
            "got": "(no cached value)" if have is None else have,
            "expected": want,
            "count": len(bad),
        }
    return out
