"""The Tokenize tab, values not formulas: each word of the prompt, its bytes, every BPE merge with its rank, the ids."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...tokenizer import display_text
from ..layout import INPUT, Layout, Region, Tab

if TYPE_CHECKING:
    from ..output import BookWriter

NAME = "Tokenize"


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    return [Tab(NAME, INPUT)]


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, tokenizer = out.sheet(tab), out.fmt, out.tokenizer

    def show(symbol: str) -> str:
        if symbol in tokenizer.special:
            return symbol
        return display_text(bytes(tokenizer.byte_decoder[ch] for ch in symbol))

    ws.set_column(0, 0, 18)
    ws.set_column(1, 1, 16)
    ws.set_column(2, 40, 9)
    ws.write_string(0, 0, "Tokenize: how the prompt became token ids", fmt.big)
    ws.write_string(
        1,
        0,
        "Byte-level BPE: each word is split into bytes, then the adjacent pair with the lowest rank in "
        "merges.txt is merged, again and again, until no pair of the word is in the list.",
        fmt.note,
    )
    ws.write_string(
        2,
        0,
        "Computed in Python when the book was built (sheetgpt tokenize shows the same); editing the "
        "Prompt tab does not change this tab.",
        fmt.note,
    )
    row = 4
    for k, word in enumerate(out.prompt.words):
        ws.write_string(row, 0, f"word {k + 1}", fmt.title)
        ws.write_string(row, 1, display_text(word.text.encode("utf-8")), fmt.token)
        row += 1
        ws.write_string(row, 0, "bytes", fmt.label)
        ws.write_row(row, 2, [show(s) for s in word.symbols], fmt.symbol)
        for step in word.steps:
            row += 1
            ws.write_string(row, 0, f"merge, rank {step.rank}", fmt.label)
            ws.write_string(row, 1, f"{show(step.pair[0])} + {show(step.pair[1])}", fmt.text)
            ws.write_row(row, 2, [show(s) for s in step.symbols], fmt.symbol)
        row += 1
        ws.write_string(row, 0, "token ids", fmt.title)
        ws.write_row(row, 2, word.ids, fmt.token)
        row += 2
    ws.freeze_panes(4, 0)
    return 0
