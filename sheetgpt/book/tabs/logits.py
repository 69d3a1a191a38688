"""The Logits tab: the vocabulary down the rows, {=MMULT(wte, TRANSPOSE(h))} of the predicting row (or every row)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import a1
from .. import cells
from ..layout import DATA_COL, FRAME_ROWS, OUTPUT, Layout, Region, Tab, weight_range

if TYPE_CHECKING:
    from ..output import BookWriter

NAME = "Logits"
ALL_LEFT = DATA_COL + 2  # column E: the first column of the logits of every position


EXERCISES = {"unembedding": ("logits", "logits.all")}  # exercise families (sheetgpt.exercises)


def column_ref(layout: Layout, t: int) -> str:
    """Position t's column of the logits of every position, from any tab: Logits!$F$5:$F$554."""
    top = FRAME_ROWS + 1
    return a1.sheet_prefix(NAME) + a1.span(top, ALL_LEFT + t, top + layout.config.vocab_size - 1, ALL_LEFT + t)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    V, wte = layout.config.vocab_size, weight_range(layout.config, "wte")

    def unembed(region: Region, h: Region) -> Region:
        region.array_fn = lambda: [
            (region.top, region.left, region.bottom, region.right, f"MMULT({wte},TRANSPOSE({h.block(NAME)}))")
        ]
        return region

    regions = [unembed(Region("logits", NAME, FRAME_ROWS + 1, V, 1, number_format="0.000"), placed["ln_f.last"])]
    if layout.logits_all or layout.generate:
        every = Region(
            "logits.all",
            NAME,
            FRAME_ROWS + 1,
            V,
            layout.T,
            left=ALL_LEFT,
            number_format="0.000",
            col_header=lambda j: f"after pos {j}",
        )
        regions.append(unembed(every, placed["ln_f.out"]))
        if layout.generate:  # one column per position: {=MMULT(wte, TRANSPOSE(h row t))}
            h = placed["ln_f.out"]
            every.array_fn = lambda: [
                (
                    every.top,
                    every.left + t,
                    every.bottom,
                    every.left + t,
                    f"MMULT({wte},TRANSPOSE({h.block(NAME, t, t)}))",
                )
                for t in range(layout.T)
            ]
    return [Tab(NAME, OUTPUT, regions)]


def write(out: BookWriter, tab: Tab) -> int:
    return cells.write_compute_tab(out, tab)
