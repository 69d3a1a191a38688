"""Reading a written book's constants back (``sheetgpt check``): the helpers the tab modules' ``read_back`` share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import a1
from ..errors import WorkbookError

if TYPE_CHECKING:
    from ..engine.book import Book, Sheet


def held(sheet: Sheet, r: int, c: int) -> float | None:
    """The number a cell holds, or None (text, a formula, nothing)."""
    hit = np.nonzero((sheet.numbers[0] == r) & (sheet.numbers[1] == c))[0]
    return float(sheet.numbers[2][hit[0]]) if len(hit) else None


def number(book: Book, name: str, r: int, c: int, what: str) -> float:
    """The number in a cell of tab ``name``; a WorkbookError naming the cell and ``what`` if there is none."""
    sheet = book.sheets[name]
    value = held(sheet, r, c)
    if value is None:
        found = sheet.strings.get((r, c))
        detail = f"text {found!r}" if found is not None else "nothing (or a formula)"
        raise WorkbookError(f"{name}!{a1.cell(r, c)} ({what}) must hold a number, found {detail}")
    return value
