"""Refuse a workbook that points outside itself, before any engine sees it.

A sheetgpt book is self-contained: every formula reads cells of the book. Third-party engines
follow what a workbook links to: the ``formulas`` package opens the local files that external
links name and reports their values; LibreOffice and Gnumeric may update links, fetch linked
images or start DDE conversations. So a book that links out is refused (exit 2, one line) before
any engine, ours included, recomputes it:

* zip parts under ``xl/externalLinks/`` and an ``<externalReferences>`` list in workbook.xml;
* any relationship with ``TargetMode="External"`` (external workbooks, linked images, hyperlinks,
  OLE links) in any ``.rels`` part;
* a formula or defined name with an external workbook reference (``[1]Sheet!A1``,
  ``'C:\\path\\[x.xlsx]S'!A1``) or a DDE call (``cmd|'/c calc'!A0``).

Refusing, not stripping: stripping would change what the formulas compute (an external reference
becomes ``#REF!``), and such a book was not written by sheetgpt, so there is nothing to prove.
"""

from __future__ import annotations

import re

from ..a1 import cell
from ..errors import WorkbookError
from .book import Book, Formulas
from .zip_limits import open_zip, read_small

_STRING = re.compile(r'"(?:[^"]|"")*"')
_QUOTED = re.compile(r"'(?:[^']|'')*'")
_EXTERNAL_REL = re.compile(rb"""TargetMode\s*=\s*["']External["']""")


def _links_out(formula: str) -> bool:
    """Whether a formula's text names another workbook or a DDE server (outside string literals)."""
    if "[" not in formula and "|" not in formula:
        return False
    rest = _STRING.sub('""', formula)
    for m in _QUOTED.finditer(rest):
        if "[" in m.group():
            return True  # '[x.xlsx]Sheet'!A1 or 'C:\dir\[x.xlsx]Sheet'!A1: sheet names cannot hold '['
    rest = _QUOTED.sub("''", rest)
    return "[" in rest or "|" in rest


def refuse_external_links(path, book: Book) -> None:
    """Raise WorkbookError if the workbook at ``path`` (read as ``book``) refers to anything outside itself."""
    with open_zip(path) as zf:
        for name in zf.namelist():
            if name.lower().startswith("xl/externallinks/"):
                raise WorkbookError(
                    f"{path}: the book links to another workbook ({name}); refusing it: a sheetgpt book "
                    "reads only its own cells"
                )
            if name.endswith(".rels"):
                if _EXTERNAL_REL.search(read_small(zf, name, 16 << 20)):
                    raise WorkbookError(
                        f"{path}: {name} has a relationship to a target outside the book "
                        '(TargetMode="External"); refusing it'
                    )
            elif name == "xl/workbook.xml" and b"externalReference" in read_small(zf, name, 64 << 20):
                raise WorkbookError(f"{path}: xl/workbook.xml lists external references; refusing the book")
    for name, text in book.defined_names.items():
        if _links_out(text):
            raise WorkbookError(f"{path}: the defined name {name!r} refers outside the book ({text[:80]}); refusing it")
    for sheet in book.sheets.values():
        for r, c, text in _formula_texts(sheet.formulas):
            if _links_out(text):
                raise WorkbookError(
                    f"'{sheet.name}'!{cell(r, c)}: the formula refers to another workbook or a DDE server "
                    f"(={text[:80]}); refusing the book"
                )


def _formula_texts(formulas):
    """(row, col, text) of each distinct formula text: a shared formula once, at its master (shifting
    a formula's references never adds a workbook name or a DDE call)."""
    if not isinstance(formulas, Formulas):
        yield from ((r, c, t) for r, c, t, _ in formulas)
        return
    yield from zip(formulas.rows.tolist(), formulas.cols.tolist(), formulas.texts)
    for r0, c0, text, _rs, _cs in formulas.shared:
        yield r0, c0, text
    for r, c, text, _ref in formulas.arrays:
        yield r, c, text
