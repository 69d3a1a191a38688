"""Which formula cells read given cells, directly or through other formulas: the book's own
formula graph, walked without computing a value.

``reach(book, sources)`` labels every cell that a formula of ``book`` reads, directly or through
other formula cells, from one of the ``sources`` rectangles with the lowest source index it reaches
(an exercise book: the first exercise a cell waits on). A reference counts whether or not the
formula would use it (both branches of an IF, every cell of an INDEX range), as in the dependency
graph Excel and LibreOffice keep. The formulas are grouped as the fast engine groups them
(``evaluator.Unit``: one R1C1 form over many cells, names resolved) and visited in its order
(``schedule.order``), so each group's labels are one vectorized pass; groups that read each other
are visited until nothing changes.
"""

from __future__ import annotations

import re

import numpy as np

from . import schedule
from .book import Book, Sheet

NONE = np.iinfo(np.int32).max  # the label of a cell that reads no source


def reach(book: Book, sources: list[tuple[str, int, int, int, int]]) -> dict[str, np.ndarray]:
    """{sheet: int32 grid of labels}: the index in ``sources`` ((sheet, r0, c0, r1, c1), ends
    inclusive) of the first source each cell is, or reads through formulas; ``NONE`` elsewhere.
    A grid covers the sheet's formula cells and sources (cells beyond it read nothing)."""
    from .evaluator import Evaluator

    wanted = _sheets_that_may_read(book, {s[0] for s in sources})
    part = {n: sh if n in wanted else Sheet(n) for n, sh in book.sheets.items()}
    units = Evaluator(Book(book.sheet_names, part, book.defined_names), values=False).units()
    shape = {name: [0, 0] for name in book.sheets}
    for u in units:
        for _r0, _c0, r1, c1 in u.boxes:
            shape[u.sheet] = [max(shape[u.sheet][0], r1 + 1), max(shape[u.sheet][1], c1 + 1)]
    for sheet, _r0, _c0, r1, c1 in sources:
        shape[sheet] = [max(shape[sheet][0], r1 + 1), max(shape[sheet][1], c1 + 1)]
    labels = {name: np.full(s, NONE, np.int32) for name, s in shape.items()}
    for k in range(len(sources) - 1, -1, -1):  # the lowest index wins where sources overlap
        sheet, r0, c0, r1, c1 = sources[k]
        labels[sheet][r0 : r1 + 1, c0 : c1 + 1] = k
    for comp, cyclic in schedule.order(units):
        changed = True
        while changed:  # once for a group that reads no cell of its own; else until nothing changes
            changed = any([_visit(u, labels) for u in comp])
            changed = changed and cyclic
    return labels


_SHEET_REF = re.compile(r"'((?:[^']|'')+)'!|([A-Za-z_\\][\w.]*)!")
_WORD = re.compile(r"[A-Za-z_\\][\w.]*")


def _texts(sheet: Sheet) -> list[str]:
    f = sheet.formulas
    if hasattr(f, "shared"):  # the reader's Formulas: a shared group's master text stands for its cells
        return list(f.texts) + [g[2] for g in f.shared] + [a[2] for a in f.arrays]
    return [t for _r, _c, t, _ref in f]


def _sheets_that_may_read(book: Book, targets: set[str]) -> set[str]:
    """The sheets whose formulas name, directly or through other sheets' formulas, one of ``targets``:
    sheet by sheet from the formula texts (a formula that may use a defined name may read any sheet),
    so more than the cells need, never less. The others need no walk (a BPE tab's thousands of
    formulas in an exercise book)."""
    names = {k.rpartition("!")[2].lower() for k in book.defined_names}
    lower = {n.lower(): n for n in book.sheets}
    reads: dict[str, set[str]] = {}
    for name, sheet in book.sheets.items():
        found: set[str] = set()
        for text in _texts(sheet):
            found.add(name)
            plain = re.sub(r'"(?:[^"]|"")*"', '""', text)
            for quoted, bare in _SHEET_REF.findall(plain):
                found.add(lower.get((quoted.replace("''", "'") if quoted else bare).lower(), ""))
            if names and any(w.lower() in names for w in _WORD.findall(plain)):
                found |= set(book.sheets)
        reads[name] = found
    out = set(targets)
    while True:
        more = {n for n, r in reads.items() if n not in out and r & out}
        if not more:
            return out
        out |= more


def _visit(u, labels: dict[str, np.ndarray]) -> bool:
    """Label the unit's cells with the lowest label their references reach; whether any changed."""
    if u.array is not None:  # a CSE range: its references are relative to its top-left cell alone
        r0, c0, r1, c1 = u.array
        rows, cols = np.array([r0]), np.array([c0])
    else:
        rows, cols = u.rows, u.cols
    got = np.full(len(rows), NONE, np.int32)
    for sheet, ref in u.refs:
        grid = labels.get(sheet)
        if grid is None or not grid.size:
            continue
        got = np.minimum(got, _lowest(grid, *schedule.ref_bounds(ref, rows, cols)))
    if (got == NONE).all():
        return False
    own = labels[u.sheet]
    if u.array is not None:
        r0, c0, r1, c1 = u.array
        old = own[r0 : r1 + 1, c0 : c1 + 1]
        new = np.minimum(old, got[0])
        changed = bool((new != old).any())
        own[r0 : r1 + 1, c0 : c1 + 1] = new
        return changed
    old = own[rows, cols]
    new = np.minimum(old, got)
    own[rows, cols] = new
    return bool((new != old).any())


def _lowest(grid: np.ndarray, R0, C0, R1, C1) -> np.ndarray:
    """Per cell, the lowest label in grid[R0..R1, C0..C1] (rectangles clipped to the grid)."""
    H, W = grid.shape
    R0, C0 = np.maximum(R0, 0), np.maximum(C0, 0)
    R1, C1 = np.minimum(R1, H - 1), np.minimum(C1, W - 1)
    out = np.full(len(R0), NONE, np.int32)
    inside = (R0 <= R1) & (C0 <= C1)
    if not inside.any():
        return out
    if ((R0 == R1) & (C0 == C1))[inside].all():  # one cell each
        out[inside] = grid[R0[inside], C0[inside]]
        return out
    b0, b1 = int(R0[inside].min()), int(R1[inside].max())
    d0, d1 = int(C0[inside].min()), int(C1[inside].max())
    sub = grid[b0 : b1 + 1, d0 : d1 + 1]
    present = np.unique(sub[sub != NONE])
    R0, R1, C0, C1 = R0 - b0, R1 - b0 + 1, C0 - d0, C1 - d0 + 1  # in the box, ends exclusive
    for label in present.tolist():  # ascending: the first label a cell's rectangle holds is its lowest
        sat = np.zeros((sub.shape[0] + 1, sub.shape[1] + 1), np.int64)
        sat[1:, 1:] = (sub == label).cumsum(0).cumsum(1)
        pick = inside & (out == NONE)
        if not pick.any():
            break
        n = sat[R1[pick], C1[pick]] - sat[R0[pick], C1[pick]] - sat[R1[pick], C0[pick]] + sat[R0[pick], C0[pick]]
        idx = np.flatnonzero(pick)[n > 0]
        out[idx] = label
    return out
