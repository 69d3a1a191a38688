"""Writing a region: its frame (title, explanation, headers, row labels) and its formulas with cached values.

Shared by the tab modules. Per-cell formulas and CSE arrays go to the sheet's ``shared`` list
as ``FormulaBlock``s, which the xlsx backend merges in as shared formulas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import a1, exercises
from .layout import Region, Tab
from .prompt_cells import text_ref
from .xlsx.shared import FormulaBlock
from .xlsx.worksheet import style_index

if TYPE_CHECKING:
    from .output import BookWriter


def note(ws, row: int, col: int, text: str) -> None:
    """A cell comment (the region's explanation on its title)."""
    if text:
        ws.write_comment(row, col, text, {"author": "sheetgpt", "x_scale": 2.5, "y_scale": 1.2})


def define_names(out: BookWriter, tab: Tab) -> None:
    """A defined name per region (h.0.attn.weights), for the Name Box."""
    for region in tab.regions:
        out.wb.define_name(region.name, f"={a1.sheet_prefix(tab.name)}{region.absolute}")


def write_compute_tab(out: BookWriter, tab: Tab) -> int:
    """A tab of stacked regions (Embed, a block, Final norm, Logits): each region with its frame and note."""
    ws = out.sheet(tab)
    cells = 0
    for region in tab.regions:
        cells += write_region(out, ws, region)
    define_names(out, tab)
    out.done(tab)
    ws.freeze_panes(0, 2)
    ws.set_column(0, 0, 5)
    ws.set_column(1, 1, 14)
    ws.set_column(2, max(r.right for r in tab.regions), 9)
    for region in tab.regions:
        note(ws, region.title_row, 0, region.text["explain"])
    return cells


def write_region(out: BookWriter, ws, region: Region) -> int:
    """Title, explanation, row labels, headers and the formulas of one region; returns its cell count."""
    layout, fmt = out.layout, out.fmt
    ws.write_string(region.title_row, 0, f"{region.step} · {region.text['title']}", fmt.title)
    ws.write_string(region.explain_row, 0, region.text["explain"], fmt.note)
    head = region.header_row
    vocab_rows = region.rows == layout.config.vocab_size and region.rows != layout.T
    # Row labels: position and token for token rows, id and token for vocabulary rows.
    if vocab_rows:
        ws.write_string(head, 0, "id", fmt.header)
        ws.write_string(head, 1, "token", fmt.header)
        for i in range(region.rows):
            ws.write_number(region.top + i, 0, i, fmt.label)
            ws.write_string(region.top + i, 1, out.tokenizer.display(i), fmt.token)
    elif region.rows == layout.T:
        ws.write_string(head, 0, "pos", fmt.header)
        ws.write_string(head, 1, "token", fmt.header)
        for i in range(region.rows):
            ws.write_number(region.top + i, 0, i, fmt.label)
            ws.write_formula(region.top + i, 1, "=" + text_ref(i), fmt.token, out.prompt.texts[i])
    write_headers(out, ws, region)
    if region.name in out.exercises:
        exercises.write_blank_region(out, ws, region)
        return region.rows * len(region.columns())
    grid = region.grid(out.cached(region.name))
    num = fmt.number(region.number_format)
    if region.formula is not None:  # merged in later by the xlsx backend, as shared formulas
        if region.heads:
            rects = [
                (
                    0,
                    region.rows,
                    region.head_left(h) - region.left,
                    region.head_left(h) - region.left + region.block_cols,
                )
                for h in range(region.heads)
            ]
        else:
            rects = [(0, region.rows, 0, region.cols)]
        ws.shared.append(FormulaBlock(region.top, region.left, grid, style_index(num), rects, region.formula))
    if region.arrays:  # the same, each cell of the range with its own cached value
        ws.shared.append(FormulaBlock(region.top, region.left, grid, style_index(num), arrays=region.arrays))
    if region.heatmap:  # one colour scale per head
        for h in range(region.heads):
            c0 = region.head_left(h)
            ws.conditional_format(
                region.top,
                c0,
                region.bottom,
                c0 + region.block_cols - 1,
                {
                    "type": "2_color_scale",
                    "min_color": "#FFFFFF",
                    "max_color": "#C00000",
                    "min_type": "num",
                    "min_value": 0,
                    "max_type": "num",
                    "max_value": 1,
                },
            )
    return region.rows * len(region.columns())


def write_headers(out: BookWriter, ws, region: Region) -> None:
    """The header row: per head, its number, key tokens and key positions; else each column's header."""
    fmt, head = out.fmt, region.header_row
    if region.heads:
        for h in range(region.heads):
            c0 = region.head_left(h)
            ws.write_string(head - 2, c0, f"head {h}", fmt.title)
            for k in range(region.block_cols):
                ws.write_formula(head - 1, c0 + k, "=" + text_ref(k), fmt.header, out.prompt.texts[k])
                ws.write_number(head, c0 + k, k, fmt.header)
        return
    for j in range(region.cols):
        if region.col_header is not None:
            label = region.col_header(j)
        elif region.cols == 1:
            label = region.name.rsplit(".", 1)[-1]
        else:
            label = j
        if isinstance(label, str):
            ws.write_string(head, region.left + j, label, fmt.header)
        else:
            ws.write_number(head, region.left + j, label, fmt.header)


def write_formulas(ws, region: Region, trace, num) -> int:
    """A region's formulas (per cell or CSE arrays) as a FormulaBlock with the reference values as
    cached results, every cell of an array its own (the Embeddings tab, whose regions are small)."""
    grid = region.grid(trace[region.name])
    rects = [(0, region.rows, 0, region.cols)] if region.formula is not None else []
    ws.shared.append(
        FormulaBlock(region.top, region.left, grid, style_index(num), rects, region.formula, region.arrays, "all")
    )
    return region.rows * len(region.columns())
