"""The bytes tab (typed-prompt books): per code point 0..255 its character, class and GPT-2 byte symbols."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import a1
from ...prompt import CLASS_NAMES, SUPPORTED, char_class
from ...tokenizer import bytes_to_unicode
from ..layout import INPUT, Layout, Region, Tab

if TYPE_CHECKING:
    from ..output import BookWriter

NAME = "bytes"
CODE_COL, CHAR_COL, CLASS_COL, SYMBOLS_COL, BYTE_SYMBOL_COL, TOKEN_ID_COL = 0, 1, 2, 3, 6, 7


def column(col: int) -> str:
    """One column, rows 2..257 (code point / byte + 1), from any tab: bytes!$B$2:$B$257."""
    return a1.sheet_prefix(NAME) + a1.span(1, col, 256, col)


def char_table() -> list[tuple[int, str, int, str]]:
    """Per code point 0..255: (code, the character or '' if not supported, class, GPT-2 byte symbols)."""
    table = bytes_to_unicode()
    rows = []
    for code in range(256):
        ok = code in SUPPORTED
        symbols = "".join(table[b] for b in chr(code).encode("utf-8"))
        rows.append((code, chr(code) if ok else "", char_class(code), symbols if ok else ""))
    return rows


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    return [Tab(NAME, INPUT, shape=(257, 8))] if layout.typed else []


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt = out.sheet(tab), out.fmt
    for k, label in enumerate(
        ["code point", "character", "class", "UTF-8 byte symbols", "class name", "byte", "GPT-2 symbol", "token id"]
    ):
        ws.write_string(0, k, label, fmt.header)
    table = bytes_to_unicode()
    for code, ch, cls, symbols in char_table():
        r = code + 1
        ws.write_number(r, CODE_COL, code)
        if ch:
            ws.write_string(r, CHAR_COL, ch)
            ws.write_string(r, SYMBOLS_COL, symbols)
        ws.write_number(r, CLASS_COL, cls)
        ws.write_string(r, 4, CLASS_NAMES[cls])
        ws.write_number(r, 5, code)
        ws.write_string(r, BYTE_SYMBOL_COL, table[code])
        ws.write_number(r, TOKEN_ID_COL, out.tokenizer.encoder[table[code]])
    ws.set_column(3, 6, 12)
    ws.freeze_panes(1, 0)
    return 0
