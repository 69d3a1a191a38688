"""The merges tab (typed-prompt books): every BPE merge with its rank, ids and the numeric key the BPE tab looks up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import a1
from ..layout import INPUT, Layout, Region, Tab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "merges"
LEFT_COL, RIGHT_COL, MERGED_ID_COL, KEY_COL = 1, 2, 6, 7


def column(col: int, n_merges: int) -> str:
    """One column of the merges, from any tab (row 1 holds the headers): merges!$H$2:$H$470."""
    return a1.sheet_prefix(NAME) + a1.span(1, col, n_merges, col)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    return [Tab(NAME, INPUT, shape=(layout.typed.n_merges, 8))] if layout.typed else []


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, tokenizer = out.sheet(tab), out.fmt, out.tokenizer
    V = tokenizer.vocab_size
    for k, label in enumerate(
        ["rank", "left", "right", "left right", "left id", "right id", "merged id", f"key = left id x {V} + right id"]
    ):
        ws.write_string(0, k, label, fmt.header)
    enc = tokenizer.encoder
    for r, (a, c) in enumerate(tokenizer.merges, start=1):
        ws.write_number(r, 0, r - 1)
        ws.write_string(r, LEFT_COL, a)
        ws.write_string(r, RIGHT_COL, c)
        ws.write_string(r, 3, f"{a} {c}")
        ws.write_number(r, 4, enc[a])
        ws.write_number(r, 5, enc[c])
        ws.write_number(r, MERGED_ID_COL, enc[a + c])
        ws.write_number(r, KEY_COL, enc[a] * V + enc[c])
    ws.set_column(1, 3, 12)
    ws.freeze_panes(1, 0)
    return 0


def given(build: Build, inputs: BookInputs) -> list[tuple[str | None, str | None]]:
    """The ranked merges a new book's tab holds (``write``)."""
    return [(a, c) for a, c in build.tokenizer.merges]


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> list[tuple[str | None, str | None]]:
    """The ranked merges (left, right) as the tab holds them (None: an empty cell)."""
    strings = book.sheets[NAME].strings
    return [(strings.get((k, LEFT_COL)), strings.get((k, RIGHT_COL))) for k in range(1, layout.typed.n_merges + 1)]
