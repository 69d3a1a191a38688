"""The engine half of sheetgpt: read an .xlsx and recompute every formula in it.

``reader`` reads a workbook safely; ``r1c1`` and ``parser`` turn formula text into named
nodes; ``values``, ``operators`` and ``functions`` give Excel's semantics on numpy batches;
``store``, ``context``, ``schedule`` and ``evaluator`` are the fast engine. ``libreoffice``,
``gnumeric`` and ``formulas_engine`` run the three independent engines; ``external`` refuses a
book that links outside itself before any engine sees it; ``cached`` reads the values a file
stores. Every engine returns ``values.Values``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WorkbookError

if TYPE_CHECKING:
    from .reader import Book
    from .values import Values

ENGINES = ("fast", "formulas", "libreoffice", "gnumeric")


def recompute(engine: str, path: Path, book: Book, *, progress=None, timeout: float = 1800, notice=None) -> Values:
    """Every formula of the book at ``path`` (already read as ``book``) recomputed by ``engine``.

    ``progress(done, total)``: the fast engine's formula cells; ``timeout``: seconds LibreOffice or
    Gnumeric may take; ``notice(text)``: what the slow engines say before they start. A book that
    refers outside itself is refused first (``external``).
    """
    from .external import refuse_external_links

    if engine not in ENGINES:
        raise WorkbookError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    refuse_external_links(path, book)
    if engine == "fast":
        from .evaluator import evaluate

        return evaluate(book, progress=progress)
    if engine == "formulas":
        from . import formulas_engine

        return formulas_engine.recompute(path, book, notice)
    if engine == "libreoffice":
        from .libreoffice import recalculate

        return recalculate(path, timeout=timeout)
    if engine == "gnumeric":
        from . import gnumeric

        return gnumeric.recalculate(path, timeout=timeout)
    raise WorkbookError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
