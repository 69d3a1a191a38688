"""Defined names in formulas: a name stands for the formula it is defined as (a range such as
``embed.h`` = ``Embed!$C$45:$AX$60``, a constant, or any formula).

A name on a sheet's scope (the reader keys it ``'Sheet!name'``) hides a workbook-wide one of the same
name on that sheet; ``Sheet!name`` asks for that sheet's. Names compare without case, as in Excel.
The definition is parsed as a formula at A1, so its relative parts move with the cell that uses it,
as Excel's do. A name that is not defined, or whose definition cannot be read, is ``#NAME?``.
"""

from __future__ import annotations

from ..errors import WorkbookError
from .parser import Err, Name, Node, parse, substitute, walk

MAX_DEPTH = 16  # names defined through names, at most this deep (a cycle of names is #NAME?)


class Names:
    def __init__(self, defined: dict[str, str]):
        self.book: dict[str, str] = {}
        self.local: dict[tuple[str, str], str] = {}
        for key, text in defined.items():
            sheet, _, name = key.rpartition("!")
            if sheet:
                self.local[(sheet.lower(), name.lower())] = text
            else:
                self.book[name.lower()] = text
        self._parsed: dict[tuple[str, str], Node | None] = {}

    def definition(self, node: Name, sheet: str | None) -> tuple[str | None, str | None]:
        """(the text a name used on ``sheet`` stands for, or None; the sheet of its scope, or None for
        the book's). Inside a workbook-wide name's definition, ``sheet`` is None: the book's names."""
        scope = node.sheet or sheet
        name = node.name.lower()
        if scope is not None and (scope.lower(), name) in self.local:
            return self.local[(scope.lower(), name)], scope
        return self.book.get(name), None

    def resolve(self, ast: Node, sheet: str | None, unknown: list[str] | None = None, depth: int = 0) -> Node:
        """``ast`` (a formula on ``sheet``) with every name replaced by its definition's tree, whose
        names are those of the definition's scope; each name that has none is ``#NAME?`` and is
        added to ``unknown``."""
        if not any(type(n) is Name for n in walk(ast)):
            return ast
        unknown = [] if unknown is None else unknown

        def leaf(n: Node) -> Node:
            if type(n) is not Name:
                return n
            text, scope = self.definition(n, sheet)
            key = ((scope or "").lower(), n.name.lower())
            if text is None or depth >= MAX_DEPTH:
                unknown.append(n.name if n.sheet is None else f"{n.sheet}!{n.name}")
                return Err("#NAME?")
            if key not in self._parsed:
                try:
                    self._parsed[key] = parse(text.removeprefix("="), 0, 0)
                except WorkbookError:
                    self._parsed[key] = None
            tree = self._parsed[key]
            if tree is None:
                unknown.append(n.name)
                return Err("#NAME?")
            return self.resolve(tree, scope, unknown, depth + 1)

        return substitute(ast, leaf)
