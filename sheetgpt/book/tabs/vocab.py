"""The vocab tab: every token's id (A), the text the book shows for it (B) and its GPT-2 form (C)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ... import a1
from ..layout import INPUT, Layout, Region, Tab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "vocab"
DISPLAY_COL, FORM_COL = 1, 2  # B: the token as the book shows it (Tokenizer.display); C: its GPT-2 form


def column(col: int, vocab_size: int) -> str:
    """One column of the vocab tab, from any tab: vocab!$B$1:$B$300."""
    return a1.sheet_prefix(NAME) + a1.span(0, col, vocab_size - 1, col)


def display_range(vocab_size: int) -> str:
    """The shown texts, looked up by the Prompt and Embeddings tabs: vocab!$B$1:$B$300."""
    return column(DISPLAY_COL, vocab_size)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    return [Tab(NAME, INPUT, shape=(layout.config.vocab_size, 3))]


def write(out: BookWriter, tab: Tab) -> int:
    ws = out.sheet(tab)
    ws.set_column(0, 0, 8)
    ws.set_column(1, 2, 20)
    for i in range(out.tokenizer.vocab_size):
        ws.write_number(i, 0, i)
        ws.write_string(i, DISPLAY_COL, out.tokenizer.display(i))
        ws.write_string(i, FORM_COL, out.tokenizer.token_str(i))
    return 0


@dataclass
class VocabTab:
    """The vocab tab as the book holds it."""

    display: list[str | None]  # the shown text of each id (None: an empty cell)
    forms: list[str | None]  # the GPT-2 form of each id
    lookup: dict[str, int]  # shown text -> the first id that shows it, as MATCH(TRUE, EXACT(...)) finds it

    def encoder(self) -> dict[str | None, int]:
        """GPT-2 form -> id (a tokenizer's encoder; None among the keys if a cell is empty)."""
        return {form: i for i, form in enumerate(self.forms)}


def _vocab_tab(display: list[str | None], forms: list[str | None]) -> VocabTab:
    lookup: dict[str, int] = {}
    for i, text in enumerate(display):
        if text is not None:
            lookup.setdefault(text, i)
    return VocabTab(display, forms, lookup)


def given(build: Build, inputs: BookInputs) -> VocabTab:
    """The vocab tab of a book being built: what ``write`` writes."""
    t = build.tokenizer
    return _vocab_tab(list(t.display_table()), [t.token_str(i) for i in range(t.vocab_size)])


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> VocabTab:
    strings = book.sheets[NAME].strings
    V = layout.config.vocab_size
    return _vocab_tab([strings.get((i, DISPLAY_COL)) for i in range(V)], [strings.get((i, FORM_COL)) for i in range(V)])
