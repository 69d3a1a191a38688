"""Excel's limits, checked on a layout before anything is written: a book past them is refused.

Excel (and LibreOffice, Gnumeric) open no sheet wider than 16,384 columns or taller than
1,048,576 rows, no formula longer than 8,192 characters and no cell text longer than 32,767
(``sheetgpt.a1``). ``check(layout, prompt)`` finds the first thing that crosses one and raises
a one-line ``SheetGPTError`` naming the option that would bring it back.
"""

from __future__ import annotations

from ..a1 import MAX_CELL_CHARS, MAX_COLS, MAX_FORMULA_CHARS, MAX_ROWS, col_name
from ..errors import SheetGPTError
from ..prompt import Prompt
from .layout import Layout, Tab


def _fix(tab: Tab, layout: Layout, rows: bool = False) -> str:
    """The option to change when ``tab`` is too big (too many ``rows``, or else too wide or long)."""
    if tab.shape is not None or (rows and layout.config.vocab_size >= MAX_ROWS - 64):  # the model's own size
        return "this model's parameters do not fit a sheet; choose a smaller --model"
    fix = getattr(tab.module, "TOO_BIG", None)  # the tab module's own advice
    if fix:
        return fix
    if layout.T > 1:
        return "lower --context"
    return "choose a smaller --model"


def _extent(tab: Tab, layout: Layout) -> tuple[int, int]:
    """(rows, columns) the tab uses, 1-based counts: its regions, and what its module's ``extent`` adds."""
    if tab.shape is not None:
        return tab.shape
    rows = max((r.bottom + 1 for r in tab.regions), default=0)
    cols = max((r.right + 1 for r in tab.regions), default=0)
    if hasattr(tab.module, "extent"):
        more_rows, more_cols = tab.module.extent(layout)
        rows, cols = max(rows, more_rows), max(cols, more_cols)
    return rows, cols


def _formulas(tab: Tab, layout: Layout):
    """(cell, text) of the tab's longest formulas: each region's corner cells and arrays, and those its
    module's ``long_formulas`` names."""
    for region in tab.regions:
        if region.formula is not None:
            cols = region.columns()
            for i, j in {(0, cols[0]), (region.rows - 1, cols[-1]), (0, cols[-1]), (region.rows - 1, cols[0])}:
                yield (region.top + i, region.left + j), region.formula(i, j)
        for r0, c0, _r1, _c1, text in region.arrays:
            yield (r0, c0), text
    if hasattr(tab.module, "long_formulas"):
        yield from tab.module.long_formulas(layout)


def check(layout: Layout, prompt: Prompt) -> None:
    """Raise SheetGPTError (one line) if the book would cross one of Excel's limits."""
    for tab in layout.tabs:
        rows, cols = _extent(tab, layout)
        if cols > MAX_COLS:
            raise SheetGPTError(
                f"the {tab.name} tab would need {cols:,} columns (to {col_name(cols - 1)}), more than the "
                f"{MAX_COLS:,} a spreadsheet allows: {_fix(tab, layout)}"
            )
        if rows > MAX_ROWS:
            raise SheetGPTError(
                f"the {tab.name} tab would need {rows:,} rows, more than the {MAX_ROWS:,} a spreadsheet allows: "
                f"{_fix(tab, layout, rows=True)}"
            )
        for (r, c), text in _formulas(tab, layout):
            if len(text) + 1 > MAX_FORMULA_CHARS:
                raise SheetGPTError(
                    f"{tab.name}!{col_name(c)}{r + 1} would hold a formula of {len(text) + 1:,} characters, more than "
                    f"the {MAX_FORMULA_CHARS:,} a spreadsheet allows: {_fix(tab, layout)}"
                )
    longest = max([prompt.text, "".join(prompt.texts)], key=len)
    if len(longest) > MAX_CELL_CHARS:
        raise SheetGPTError(
            f"the prompt is {len(longest):,} characters, more than the {MAX_CELL_CHARS:,} a cell holds: "
            "shorten --prompt (or lower --context)"
        )
