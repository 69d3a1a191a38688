"""The engine half of sheetgpt: read an .xlsx and recompute every formula in it.

``reader`` reads a workbook safely; ``r1c1`` and ``parser`` turn formula text into named
nodes; ``values``, ``operators`` and ``functions`` give Excel's semantics on numpy batches;
``store``, ``context``, ``schedule`` and ``evaluator`` are the fast engine. ``registry`` lists
the engines (``fast``, ``formulas_engine``, ``libreoffice``, ``gnumeric``, ``ironcalc_engine``:
one module each, one protocol); ``external`` refuses a book that links outside itself before
any engine sees it; ``cached`` reads the values a file stores. Every engine returns ``values.Values``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .registry import ENGINES, backend

if TYPE_CHECKING:
    from .book import Book
    from .values import Values

__all__ = ["ENGINES", "recompute"]


def recompute(
    engine: str, path: Path, book: Book, *, progress=None, timeout: float = 1800, notice=None, edits=None
) -> Values:
    """Every formula of the book at ``path`` (already read as ``book``) recomputed by ``engine``.

    ``progress(done, total)``: the fast engine's formula cells; ``timeout``: seconds an outside
    engine may take; ``notice(text)``: what the slow engines say before they start; ``edits``:
    typed-text edits, for the engines whose ``TYPED_EDITS`` is true. A book that refers outside
    itself is refused first (``external``).
    """
    from .external import refuse_external_links

    module = backend(engine)
    refuse_external_links(path, book)
    return module.recompute(path, book, progress=progress, timeout=timeout, notice=notice, edits=edits)
