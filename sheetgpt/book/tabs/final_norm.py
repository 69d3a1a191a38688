"""The Final norm tab: ln_f over every position, then a one-hot row that picks the predicting position's row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import a1
from .. import cells
from ..layout import COMPUTE, Layout, Region, Tab, stack
from ..ops import layer_norm
from . import block, prompt

if TYPE_CHECKING:
    from ..output import BookWriter

NAME = "Final norm"


# Exercise families (sheetgpt.exercises): its stages join the blocks' layer norms, and the unembedding.
EXERCISES = {
    "layer_norm": ("ln_f.mean", "ln_f.var", "ln_f.norm", "ln_f.out"),
    "variance": ("ln_f.var",),
    "unembedding": ("ln_f.last",),
}


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    T = layout.T
    ln_f = layer_norm(layout, NAME, "ln_f", block.output(layout, placed))
    select = Region("ln_f.select", NAME, 0, 1, T, number_format="0", col_header=lambda j: j)
    last = Region("ln_f.last", NAME, 0, 1, layout.config.n_embd)
    stack([*ln_f, select, last])
    select.formula = lambda i, j: (
        f"IF({a1.cell(select.header_row, select.left + j, True)}={prompt.predict_after_ref()},1,0)"
    )
    last.array_fn = lambda: [
        (last.top, last.left, last.top, last.right, f"MMULT({select.block(NAME)},{ln_f[-1].block(NAME)})")
    ]
    return [Tab(NAME, COMPUTE, [*ln_f, select, last])]


def write(out: BookWriter, tab: Tab) -> int:
    return cells.write_compute_tab(out, tab)
