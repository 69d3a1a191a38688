"""The Predict tab: softmax of the logits with an editable temperature, and the top tokens (LARGE / MATCH / INDEX)
with a bar chart."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import a1
from .. import cells, editable
from ..layout import OUTPUT, Layout, Region, Tab
from . import prompt as prompt_tab
from . import vocab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "Predict"
TEMPERATURE = (2, 2)  # C3 (editable)
TEMPERATURE_USED = (2, 3)  # D3: C3 when it follows its rule (book.editable), else TEMPERATURE_VALUE
STATUS = (1, 0)  # A2: what the tab shows, or why C3 cannot be used
TEMPERATURE_VALUE = 1.0  # what a new book holds there
RULE = editable.Number(0.001, 1e6)  # the temperature's rule: `sheetgpt predict --temperature`'s range (not 0)
TOP_K = 10
# The top-k table, beside the probabilities: rank, probability, token id, token (columns F..I).
RANK_COL, PROB_COL, ID_COL, TOKEN_COL = 5, 6, 7, 8


def top_token_ref(layout: Layout) -> str:
    """The most probable token's text, from any tab: Predict!$I$9."""
    return a1.sheet_prefix(NAME) + a1.cell(layout.region("predict.probs").top, TOKEN_COL, True, True)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    V = layout.config.vocab_size
    logits = placed["logits"]
    temp = a1.cell(*TEMPERATURE_USED, True, True)
    top = Region("predict.max", NAME, 3, 1, 1, number_format="0.0000")
    total = Region("predict.sum", NAME, 4, 1, 1, number_format="0.0000")
    probs = Region("predict.probs", NAME, 8, V, 1, number_format="0.000000")
    top_cell, total_cell = a1.cell(top.top, top.left, True, True), a1.cell(total.top, total.left, True, True)
    top.formula = lambda i, j: f"MAX({logits.block(NAME)})"
    # a one-cell CSE formula: EXP over a range is element-wise in every engine only in an array formula
    total.array_fn = lambda: [
        (total.top, total.left, total.top, total.left, f"SUM(EXP(({logits.block(NAME)}-{top_cell})/{temp}))")
    ]
    probs.formula = lambda i, j: f"EXP(({logits.at(i, 0, NAME)}-{top_cell})/{temp})/{total_cell}"
    return [Tab(NAME, OUTPUT, [top, total, probs])]


def write(out: BookWriter, tab: Tab) -> int:
    """Temperature, largest logit and sum as labelled cells; probabilities down the rows; the top-k table."""
    ws, fmt = out.sheet(tab), out.fmt
    count = 0
    for region in tab.regions:
        value = out.cached(region.name)
        num = fmt.number(region.number_format)
        if region.rows == 1:
            ws.write_string(region.top, 0, region.text["title"], fmt.label)
            if region.arrays:
                ((r0, c0, r1, c1, text),) = region.arrays
                ws.write_array_formula(r0, c0, r1, c1, "{=" + text + "}", num, _value(value.ravel()[0]))
            else:
                ws.write_formula(region.top, region.left, "=" + region.formula(0, 0), num, _value(value.ravel()[0]))
            count += 1
            continue
        ws.write_string(region.title_row, 0, region.text["title"], fmt.title)
        ws.write_string(region.explain_row, 0, region.text["explain"], fmt.note)
        for col, label in enumerate(["id", "token", "probability"]):
            ws.write_string(region.header_row, col, label, fmt.header)
        for i in range(region.rows):
            ws.write_number(region.top + i, 0, i, fmt.label)
            ws.write_string(region.top + i, 1, out.tokenizer.display(i), fmt.token)
            ws.write_formula(region.top + i, region.left, "=" + region.formula(i, 0), num, _value(value[i, 0]))
        count += region.rows
    cells.define_names(out, tab)
    _write_top_k(out, ws, tab)
    out.done(tab)
    ws.freeze_panes(0, 2)
    ws.set_column(0, 0, 5)
    ws.set_column(1, 1, 14)
    ws.set_column(2, max(r.right for r in tab.regions), 9)
    for region in tab.regions:
        cells.note(ws, region.top if region.rows == 1 else region.title_row, 0, region.text["explain"])
    return count


def _value(x) -> float:
    return float(x) if np.isfinite(x) else 0


def _write_top_k(out: BookWriter, ws, tab: Tab) -> None:
    """The top-k table (LARGE / MATCH / INDEX) and a bar chart of it."""
    layout, fmt, tokenizer = out.layout, out.fmt, out.tokenizer
    probs_region = layout.region("predict.probs")
    probs = probs_region.absolute
    V = layout.config.vocab_size
    texts = vocab.display_range(V)
    ws.write_string(0, 0, "Next-token prediction", fmt.big)
    ok, typed = RULE.ok_formula(a1.cell(*TEMPERATURE, True, True)), a1.cell(*TEMPERATURE, True, True)
    fine = "Softmax of the logits, with a temperature you can edit (yellow)."
    wrong = f"The temperature (C3) must be {RULE.describe()}: using {TEMPERATURE_VALUE:g}."
    ws.write_formula(*STATUS, f'=IF({ok}=1,"{fine}","{wrong}")', fmt.note, fine)
    ws.write_string(TEMPERATURE[0], 0, "temperature", fmt.label)
    ws.write_number(*TEMPERATURE, TEMPERATURE_VALUE, fmt.edit)
    used = f"=IF({ok}=1,{RULE.used_formula(typed)},{TEMPERATURE_VALUE:g})"
    ws.write_formula(*TEMPERATURE_USED, used, None, TEMPERATURE_VALUE)
    if layout.generate:  # the prompt and the greedy continuation, as text
        shown, rest = prompt_tab.continuation_text(out)
        r, c = TEMPERATURE[0], RANK_COL
        ws.write_string(r, c, "prompt", fmt.label)
        ws.write_formula(r, c + 1, "=" + prompt_tab.prompt_text_formula(layout), fmt.text, shown)
        ws.write_string(r + 1, c, "continuation", fmt.label)
        cont = prompt_tab.continuation_formula(layout, a1.cell(r, c + 1))
        ws.write_formula(r + 1, c + 1, "=" + cont, fmt.edit, rest)
    top = probs_region.top
    for k, label in enumerate(["rank", "probability", "token id", "token"]):
        ws.write_string(probs_region.header_row, RANK_COL + k, label, fmt.header)
    ws.write_string(probs_region.title_row, RANK_COL, f"Top {TOP_K}", fmt.title)
    p = out.trace["predict.probs"][:, 0]
    order = np.argsort(-p, kind="stable")
    pct = fmt.number("0.00%")
    for k in range(min(TOP_K, V)):
        r = top + k
        prob, tid = a1.cell(r, PROB_COL), a1.cell(r, ID_COL)
        ws.write_number(r, RANK_COL, k + 1, fmt.label)
        ws.write_formula(r, PROB_COL, f"=LARGE({probs},{k + 1})", pct, float(p[order[k]]))
        ws.write_formula(r, ID_COL, f"=MATCH({prob},{probs},0)-1", fmt.number("0"), int(order[k]))
        token = tokenizer.display(int(order[k]))
        ws.write_formula(r, TOKEN_COL, f"=INDEX({texts},{tid}+1)", fmt.token, token)
    ws.set_column(0, 0, 22)
    ws.set_column(1, 1, 16)
    ws.set_column(RANK_COL, PROB_COL, 12)  # "continuation" and "probability" in full
    ws.set_column(TOKEN_COL, TOKEN_COL, 16)
    n = min(TOP_K, V)
    chart = out.wb.add_chart({"type": "bar"})
    chart.add_series(
        {
            "name": "probability",
            "categories": [NAME, top, TOKEN_COL, top + n - 1, TOKEN_COL],
            "values": [NAME, top, PROB_COL, top + n - 1, PROB_COL],
            "fill": {"color": "#C55A11"},
            "data_labels": {"value": True, "num_format": "0.0%"},
        }
    )
    chart.set_title({"name": "Next token: top probabilities"})
    chart.set_y_axis({"reverse": True})
    chart.set_x_axis({"num_format": "0%", "min": 0})
    chart.set_legend({"none": True})
    ws.insert_chart(top + n + 2, RANK_COL, chart, {"x_scale": 1.2, "y_scale": 1.2})


def given(build: Build, inputs: BookInputs) -> float:
    """The temperature a new book's softmax uses (the cell ``write`` writes)."""
    return TEMPERATURE_VALUE


def read_back(book: Book, layout: Layout, inputs: BookInputs):
    """The temperature the book's softmax uses: C3 under its rule, else 1 (``editable.FORMULA`` for a
    formula, resolved in ``recomputed``)."""
    held = editable.held(book.sheets[NAME], *TEMPERATURE)
    return held if held is editable.FORMULA else _used(held)


def recomputed(temperature, values, inputs: BookInputs) -> float:
    """A formula in C3 as the engine computed it, under its rule."""
    return _used(editable.computed(values, NAME, *TEMPERATURE)) if temperature is editable.FORMULA else temperature


def _used(value) -> float:
    used = RULE.usable(value)
    return TEMPERATURE_VALUE if used is None else used
