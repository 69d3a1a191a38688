"""The `formulas` package as an engine: an independent recomputation, for small books."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from ..a1 import parse_cell
from ..errors import WorkbookError
from .reader import Book
from .values import Values

MAX_CELLS = 60_000  # above this the formulas package takes minutes and gigabytes

_KEY = re.compile(r"^'\[[^\]]*\](.*)'!([A-Z]+\d+)(?::([A-Z]+\d+))?$")  # "'[book.xlsx]SHEET'!A1:B2"


def recompute(path: Path, book: Book) -> Values:
    """Every formula of the book at ``path`` (read as ``book``) recomputed by `formulas`."""
    n = sum(len(s.formulas) for s in book.sheets.values()) + sum(s.n_numbers for s in book.sheets.values())
    if n > MAX_CELLS:
        raise WorkbookError(
            f"{path}: {n:,} cells is too many for --engine formulas (it would take many minutes "
            f"and gigabytes; limit {MAX_CELLS:,}); use --engine fast or libreoffice"
        )
    import formulas

    started = time.perf_counter()
    model = formulas.ExcelModel().loads(str(path)).finish()
    solution = model.calculate()
    numbers = {name: np.full(s.dims, np.nan) for name, s in book.sheets.items()}
    text: dict = {name: {} for name in book.sheets}
    errors: dict = {name: {} for name in book.sheets}
    upper = {name.upper(): name for name in book.sheets}
    for key, value in solution.items():
        m = _KEY.match(key)
        if not m or m.group(1) not in upper:
            continue
        sheet = upper[m.group(1)]
        r0, c0 = parse_cell(m.group(2))
        arr = np.asarray(getattr(value, "value", value), dtype=object)
        arr = arr.reshape(arr.shape[-2:]) if arr.ndim >= 2 else arr.reshape(1, 1)
        for (i, j), x in np.ndenumerate(arr):
            r, c = r0 + i, c0 + j
            if r >= numbers[sheet].shape[0] or c >= numbers[sheet].shape[1]:
                continue
            if isinstance(x, (bool, np.bool_)):
                text[sheet][(r, c)] = str(bool(x)).upper()
            elif isinstance(x, (int, float, np.integer, np.floating)):
                numbers[sheet][r, c] = float(x)
            elif isinstance(x, str):
                text[sheet][(r, c)] = x
            elif x is not None and str(x) not in ("", "empty"):
                errors[sheet][(r, c)] = str(x)
    return Values(numbers, text, errors, timings={"total": time.perf_counter() - started})
