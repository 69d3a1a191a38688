"""The Logits tab: the vocabulary down the rows, {=MMULT(wte, TRANSPOSE(h))} of the predicting row (or every row)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import cells
from ..layout import DATA_COL, FRAME_ROWS, OUTPUT, Layout, Region, Tab, weight_range

if TYPE_CHECKING:
    from ..writer import BookWriter

NAME = "Logits"


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    V, wte = layout.config.vocab_size, weight_range(layout.config, "wte")

    def unembed(region: Region, h: Region) -> Region:
        region.array_fn = lambda: [
            (region.top, region.left, region.bottom, region.right, f"MMULT({wte},TRANSPOSE({h.block(NAME)}))")
        ]
        return region

    regions = [unembed(Region("logits", NAME, FRAME_ROWS + 1, V, 1, number_format="0.000"), placed["ln_f.last"])]
    if layout.logits_all:
        every = Region(
            "logits.all",
            NAME,
            FRAME_ROWS + 1,
            V,
            layout.T,
            left=DATA_COL + 2,
            number_format="0.000",
            col_header=lambda j: f"after pos {j}",
        )
        regions.append(unembed(every, placed["ln_f.out"]))
    return [Tab(NAME, OUTPUT, regions)]


def write(out: BookWriter, tab: Tab) -> int:
    return cells.write_compute_tab(out, tab)
