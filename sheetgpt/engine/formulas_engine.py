"""The `formulas` package as an engine: an independent recomputation, for small books."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from ..a1 import parse_cell
from ..errors import WorkbookError
from .book import Book
from .values import Values

# What the formulas package costs, measured on this 2-core machine with formulas 1.2-1.3 (cells = formula
# cells + numeric constants; range cells = the cells of every range a formula names, counted once per
# formula: the package builds a graph edge from each to its formula, so a generating book's products,
# one MMULT per row over a whole weight matrix, cost far more than their cell count says):
#   the micro book, 10,192 cells: 15 s and 354 MB;
#   the bundled model --blocks 1 --context 8 --no-typed-prompt, 76,816 cells and 0.81 M range cells:
#     78 s of CPU, 1.15 GiB;
#   the bundled model's default book (sheetgpt build: 24 rows, 2 blocks, BPE tab), 220,377 cells and
#     10.4 M range cells: 7.48 GB (issue 28; the estimate by cells alone said 2.8 GB).
# Memory is fitted through the last two (BYTES_BASE as before), and then predicted a third within 3%:
#   the bundled model --blocks 1 --no-typed-prompt (24 rows), 119,921 cells and 2.87 M range cells:
#     2.58 GB measured (ru_maxrss), 2.66 GB estimated (by cells alone: 1.72); 219 s of CPU.
# Time stays a line through cells (it overstates these books' CPU time by 20% to 2x).
SECONDS_PER_CELL = 2.2e-3
BYTES_BASE = 230 << 20
BYTES_PER_CELL = 7_100
BYTES_PER_RANGE_CELL = 545
# Books whose estimate passes either bound are refused: they would not finish in a CI job's time
# or in an ordinary machine's memory (about 820,000 cells for the time; the default book is near the memory bound).
MAX_SECONDS = 30 * 60
MAX_BYTES = 8 << 30

SENTINEL = False  # it builds every formula cell from its formula, never from a cached value
TYPED_EDITS = False
MISSING = "the formulas package is not installed: pip install formulas"

_KEY = re.compile(r"^'\[[^\]]*\](.*)'!([A-Z]+\d+)(?::([A-Z]+\d+))?$")  # "'[book.xlsx]SHEET'!A1:B2"


def cells(book: Book) -> int:
    """The cells the formulas package builds a node for: formula cells and numeric constants."""
    return sum(len(s.formulas) for s in book.sheets.values()) + sum(s.n_numbers for s in book.sheets.values())


_RANGE = re.compile(r"\$?([A-Z]{1,3})\$?(\d+):\$?([A-Z]{1,3})\$?(\d+)")  # A1:B2, $A$1:$B$2, 'tab'!A1:B2


def range_cells(book: Book) -> int:
    """The cells of every A1 range the book's formulas name, counted once per formula (a shared
    formula once per cell it fills, as the package reads it)."""
    total = 0
    for sheet in book.sheets.values():
        for _r, _c, text, _array in sheet.formulas:
            for m in _RANGE.finditer(text):
                r0, c0 = parse_cell(m.group(1) + m.group(2))
                r1, c1 = parse_cell(m.group(3) + m.group(4))
                total += (abs(r1 - r0) + 1) * (abs(c1 - c0) + 1)
    return total


def estimate(book: Book) -> tuple[int, float, int]:
    """(cells, seconds, bytes) that recomputing ``book`` with the formulas package is expected to take."""
    n = cells(book)
    return n, n * SECONDS_PER_CELL, BYTES_BASE + n * BYTES_PER_CELL + range_cells(book) * BYTES_PER_RANGE_CELL


def describe(n: int, seconds: float, nbytes: int) -> str:
    time_text = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
    return f"{n:,} cells, about {time_text} and {nbytes / (1 << 30):.1f} GB"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("formulas") is not None


def recompute(path: Path, book: Book, *, progress=None, timeout: float = 1800, notice=None, edits=None) -> Values:
    """Every formula of the book at ``path`` (read as ``book``) recomputed by `formulas`.

    A book whose estimate (``estimate``) passes MAX_SECONDS or MAX_BYTES is refused; otherwise
    ``notice(text)`` is told the estimate before the work starts.
    """
    if edits:
        raise WorkbookError("--engine formulas takes no edits; use --engine libreoffice or ironcalc")
    n, seconds, nbytes = estimate(book)
    if seconds > MAX_SECONDS or nbytes > MAX_BYTES:
        raise WorkbookError(
            f"{path}: {describe(n, seconds, nbytes)} estimated for --engine formulas, past its limits "
            f"({MAX_SECONDS // 60} min, {MAX_BYTES >> 30} GB); use --engine fast, libreoffice or gnumeric"
        )
    if notice is not None:
        notice(f"--engine formulas: {describe(n, seconds, nbytes)} (estimated); recomputing")
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
