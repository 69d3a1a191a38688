"""The values a workbook file stores: its constants and the cached results of its formula cells.

This is what a spreadsheet shows when it opens a book without recalculating (LibreOffice's
default for .xlsx, Excel's Protected View, previewers, pandas/openpyxl ``data_only``), and what
Gnumeric's ``ssconvert --recalc`` writes back after recomputing. ``file_values`` returns it as
the one ``Values`` type every engine returns, so that ``check`` compares it with the reference
like any recomputation.
"""

from __future__ import annotations

import numpy as np

from .book import Book, Sheet
from .values import Values


def _number(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if np.isfinite(x) else None


def file_values(book: Book, sheets=None) -> Values:
    """Constants and cached formula results of ``book`` (``sheets``: names to include, default all).

    Numbers (booleans as 1/0), texts and errors land where ``Values`` keeps them; a formula cell
    without a cached value is empty (NaN). ``Values.kinds`` is not set.
    """
    numbers: dict[str, np.ndarray] = {}
    text: dict = {}
    errors: dict = {}
    for name in sheets if sheets is not None else book.sheets:
        sheet: Sheet = book.sheets[name]
        grid = sheet.dense()
        t: dict = dict(sheet.strings)
        e: dict = dict(sheet.errors)
        if sheet.booleans or sheet.cached:
            grid = np.array(grid, copy=True)
            for (r, c), b in sheet.booleans.items():
                grid[r, c] = 1.0 if b else 0.0
            types = sheet.cached_types
            for (r, c), v in sheet.cached.items():
                kind = types.get((r, c), "n")
                if kind == "n":
                    x = _number(v)
                    if x is None:
                        t[(r, c)] = v
                    else:
                        grid[r, c] = x
                elif kind == "b":
                    grid[r, c] = 1.0 if v.strip() in ("1", "true", "TRUE") else 0.0
                elif kind == "e":
                    e[(r, c)] = v.strip()
                else:  # str, inlineStr, s: text
                    t[(r, c)] = v
        numbers[name] = grid
        text[name] = t
        errors[name] = e
    return Values(numbers, text, errors)
