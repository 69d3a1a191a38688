"""The Neurons tab: which MLP neurons fire for each token, in a block you choose.

For each token row, the 5 neurons with the largest GELU activation in block L (LARGE over the row of
the block's GELU region, picked with CHOOSE(L + 1, 'Block 0'!row, 'Block 1'!row, ...); MATCH finds
each value's neuron, the first on a tie), and a heatmap: the activations, in every row, of the
predicting position's 5 neurons (CHOOSE over one INDEX per block). Books built with --generate or --steer have this tab.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import a1
from ...reference import neuron_view
from .. import cells, editable
from ..layout import OUTPUT, Layout, Region, Tab, stack
from . import prompt

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "Neurons"
GUIDE_SECTION = "neurons"  # the Guide shows this section of regions.ini: what to try here
K = 5  # neurons shown per row
BLOCK = (2, 1)  # B3: the block whose neurons are shown (editable)
STATUS = (2, 2)  # C3: what the tab shows, or why the block number cannot be used
USED = (3, 1)  # B4: the block shown: B3 rounded when it follows its rule (book.editable), else the last block
FIRST_TOP = 7  # the first region's data row: its title on row 5, below the block cell


def default_block(layout: Layout) -> int:
    return layout.config.n_layer - 1


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    if not layout.steer:
        return []
    T, n = layout.T, layout.config.n_layer
    rank = dict(col_header=lambda j: j + 1)
    act = Region("neurons.act", NAME, 0, T, K, **rank)
    ids = Region("neurons.id", NAME, 0, T, K, number_format="0", **rank)
    focus = Region("neurons.focus", NAME, 0, 1, K, number_format="0", **rank)
    heat = Region("neurons.heat", NAME, 0, T, K)
    stack([act, ids, focus, heat], FIRST_TOP)
    chosen = a1.cell(*USED, True, True)
    gelus = [placed[f"h.{b}.mlp.gelu"] for b in range(n)]

    def row(i: int) -> str:  # row i of the chosen block's GELU region
        return f"CHOOSE({chosen}+1,{','.join(g.row(i, NAME) for g in gelus)})"

    act.formula = lambda i, j: f"LARGE({row(i)},{a1.cell(act.header_row, act.left + j, row_abs=True)})"
    ids.formula = lambda i, j: f"MATCH({act.at(i, j, NAME)},{row(i)},0)-1"
    column = lambda j: a1.span(ids.top, ids.left + j, ids.bottom, ids.left + j, (True, True), (False, False))  # noqa: E731
    focus.formula = lambda i, j: f"INDEX({column(j)},{prompt.predict_after_ref()}+1)"
    def heat_cell(i: int, j: int) -> str:  # the chosen block's activation of focus neuron j in row i
        k = a1.cell(focus.top, focus.left + j, row_abs=True)
        # CHOOSE of one INDEX(row, 1, k) per block: Gnumeric 1.12.55 gives #REF! for INDEX over
        # CHOOSE(ranges), and for INDEX(row, k) without the row number
        return f"CHOOSE({chosen}+1,{','.join(f'INDEX({g.row(i, NAME)},1,{k}+1)' for g in gelus)})"

    heat.formula = heat_cell
    return [Tab(NAME, OUTPUT, [act, ids, focus, heat])]


def block_rule(layout: Layout) -> editable.Number:
    """The block cell's rule: a whole number from 0 to n_layer - 1 (``book.editable``)."""
    return editable.Number(0, layout.config.n_layer - 1, whole=True)


def given(build: Build, inputs: BookInputs) -> int:
    """The block a new book shows: the last (``default_block``)."""
    return default_block(inputs.layout)


def stages(inputs: BookInputs, trace: dict) -> dict:
    """The tab's reference stages, from the trace's GELU activations."""
    gelus = [trace[f"h.{b}.mlp.gelu"] for b in range(inputs.layout.config.n_layer)]
    return neuron_view(gelus, inputs["neurons"], inputs["prompt"].predict_after, K)


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, layout = out.sheet(tab), out.fmt, out.layout
    texts = layout.texts["neurons"] if layout.texts.has_section("neurons") else {}
    ws.write_string(0, 0, texts.get("title", NAME), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    ws.write_string(BLOCK[0], 0, "block", fmt.label)
    block = out.inputs["neurons"]
    ws.write_number(*BLOCK, block, fmt.edit)
    typed, rule, last = a1.cell(*BLOCK, True, True), block_rule(layout), default_block(layout)
    ok = rule.ok_formula(typed)
    ws.write_formula(
        *STATUS,
        f'=IF({ok}=1,"the MLP neurons of block "&{rule.used_formula(typed)},'
        f'"B3 must be {rule.describe()}: showing block {last}")',
        fmt.note,
        f"the MLP neurons of block {block}",
    )
    ws.write_string(USED[0], 0, "block shown", fmt.label)
    ws.write_formula(*USED, f"=IF({ok}=1,{rule.used_formula(typed)},{last})", fmt.number("0"), block)
    count = 0
    for region in tab.regions:
        count += cells.write_region(out, ws, region)
        cells.note(ws, region.title_row, 0, region.text["explain"])
    act, _, focus, heat = tab.regions
    # the heatmap: white (lowest) to red (highest), over each region's cells
    for region in (act, heat):
        ws.conditional_format(
            region.top,
            region.left,
            region.bottom,
            region.right,
            {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#C00000"},
        )
    ws.write_string(focus.top, 1, "at the predicting position", fmt.token)
    for j in range(K):  # the heatmap's columns: the predicting position's neurons, by number
        ws.write_formula(
            heat.header_row,
            heat.left + j,
            f'="neuron "&{a1.cell(focus.top, focus.left + j)}',
            fmt.header,
            f"neuron {int(out.trace['neurons.focus'][0, j])}",
        )
    cells.define_names(out, tab)
    ws.freeze_panes(0, 2)
    ws.set_column(0, 0, 8)
    ws.set_column(1, 1, 24)
    ws.set_column(2, 2 + K, 11)
    out.done(tab)
    return count


def read_back(book: Book, layout: Layout, inputs: BookInputs):
    """The block whose neurons the tab shows: B3 under its rule, else the last block (``editable.FORMULA``
    for a formula, resolved in ``recomputed``)."""
    held = editable.held(book.sheets[NAME], *BLOCK)
    return held if held is editable.FORMULA else _used(layout, held)


def recomputed(block, values, inputs: BookInputs) -> int:
    """A formula in B3 as the engine computed it, under its rule."""
    if block is not editable.FORMULA:
        return block
    return _used(inputs.layout, editable.computed(values, NAME, *BLOCK))


def _used(layout: Layout, value) -> int:
    used = block_rule(layout).usable(value)
    return default_block(layout) if used is None else int(used)
