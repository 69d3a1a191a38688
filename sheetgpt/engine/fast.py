"""The fast engine as a backend: our own vectorized evaluator (``evaluator``), in this process."""

from __future__ import annotations

from pathlib import Path

from ..errors import WorkbookError
from .book import Book
from .values import Values

SENTINEL = False  # it never reads a cached value: every formula cell is evaluated from its formula
TYPED_EDITS = False
MISSING = ""


def available() -> bool:
    return True


def recompute(path: Path, book: Book, *, progress=None, timeout: float = 1800, notice=None, edits=None) -> Values:
    """Every formula of ``book`` evaluated; ``progress(done, total)`` is told the formula cells done."""
    from .evaluator import evaluate

    if edits:
        raise WorkbookError("--engine fast takes no edits: type into the book, or use --engine libreoffice or ironcalc")
    return evaluate(book, progress=progress)
