"""Read an .xlsx workbook safely and fast: constants, formula text, nothing executed.

The workbook comes from a user, so every part is treated as hostile: the zip's members are
counted and their declared sizes bounded (one by one and in total, duplicates refused), each
is read through a ``zipfile`` stream with decompressed-size accounting, any XML carrying a
``<!DOCTYPE`` is refused before it is parsed, and sheet sizes are checked against Excel's
limits. Cached values of formula cells are kept apart (``Sheet.cached``) and never used as truth.

The reader sees what a conforming XML parser sees, or refuses: markup it does not interpret
(comments, CDATA sections, processing instructions, a declared encoding other than UTF-8,
namespace declarations inside ``<sheetData>``, elements of a foreign namespace there, a
worksheet whose default namespace is not SpreadsheetML's) is refused with one line, as are
character and entity references that XML does not allow.

One job per module; this one only names the entry point:

* ``book``: the data model (``Book``, ``Sheet``, ``Formulas``);
* ``zip_limits``: the zip's bounds, bounded streams of its members;
* ``markup``: XML declarations, refused markup, entities, attributes, namespaces;
* ``shared_strings``: the shared-strings part;
* ``sheet_parser``: one worksheet part into a ``Sheet``;
* ``workbook_parser``: the workbook part and its relationships, then the sheets (``read_workbook``);
* ``pool``: sheets read by forked worker processes.
"""

from __future__ import annotations

from .book import Book, Formulas, Sheet
from .workbook_parser import read_workbook

__all__ = ["Book", "Formulas", "Sheet", "read_workbook"]
