"""The Embed tab: each token's row of wte plus its position's row of wpe, the residual stream's start."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import a1
from .. import cells
from ..layout import COMPUTE, Layout, Region, Tab, stack
from . import prompt

if TYPE_CHECKING:
    from ..output import BookWriter

NAME = "Embed"


# Exercise families (sheetgpt.exercises): stage names as the regions' (blocks': without "h.N.").
EXERCISES = {"embedding": ("embed.h",)}


def weight_column(name: str, rows: int, j: int) -> str:
    """Column j of a weight tab, rows absolute: wte!B$1:B$300."""
    return a1.sheet_prefix(name) + a1.span(0, j, rows - 1, j, (True, True), (False, False))


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    c, T = layout.config, layout.T
    wte = Region("embed.wte", NAME, 0, T, c.n_embd)
    wpe = Region("embed.wpe", NAME, 0, T, c.n_embd)
    h = Region("embed.h", NAME, 0, T, c.n_embd)
    stack([wte, wpe, h])
    V, P = c.vocab_size, c.n_positions
    wte.formula = lambda i, j: f"INDEX({weight_column('wte', V, j)},MAX({prompt.id_ref(i)},0)+1)"
    wpe.formula = lambda i, j: f"INDEX({weight_column('wpe', P, j)},{a1.cell(wpe.top + i, 0, col_abs=True)}+1)"
    h.formula = lambda i, j: f"{wte.at(i, j, NAME)}+{wpe.at(i, j, NAME)}"
    return [Tab(NAME, COMPUTE, [wte, wpe, h])]


def write(out: BookWriter, tab: Tab) -> int:
    return cells.write_compute_tab(out, tab)
