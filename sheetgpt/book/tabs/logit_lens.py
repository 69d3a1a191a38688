"""The Logit lens tab: what the model would predict if it stopped after each block.

One row per block: the predicting position's residual after block i, ln_f, the logits
(wte), the top token and its probability; a summary table on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...reference import logit_lens
from .. import cells
from ..layout import FRAME_ROWS, OUTPUT, Layout, Region, Tab, stack, weight_range
from ..ops import layer_norm
from . import vocab

if TYPE_CHECKING:
    from ..output import BookWriter
    from ..trace import BookInputs

NAME = "Logit lens"
SUMMARY_TOP = 4  # first row of the summary table (block, top token, probability, token id)


def stages(inputs: BookInputs, trace: dict) -> dict:
    """ln_f and the tied unembedding applied to each block's output at the predicting position."""
    config, weights = inputs.layout.config, inputs["weights"]
    f64 = {name: np.asarray(weights[name], dtype=np.float64) for name in ("wte", "ln_f.g", "ln_f.b")}
    outputs = [trace[f"h.{i}.res_2"] for i in range(config.n_layer)]
    t = inputs["prompt"].predict_after
    return logit_lens(outputs, t, f64["ln_f.g"], f64["ln_f.b"], config.layer_norm_epsilon, f64["wte"])


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    c = layout.config
    n_layer, V = c.n_layer, c.vocab_size
    select = placed["ln_f.select"]
    outputs = [placed[f"h.{i}.res_2"] for i in range(n_layer)]
    x = Region("lens.x", NAME, 0, n_layer, c.n_embd)
    ln = layer_norm(layout, NAME, "lens", x, params="ln_f")
    logits = Region("lens.logits", NAME, 0, V, n_layer, number_format="0.000")
    top = Region("lens.max", NAME, 0, n_layer, 1)
    total = Region("lens.sum", NAME, 0, n_layer, 1)
    prob = Region("lens.prob", NAME, 0, n_layer, 1, number_format="0.00%")
    ids = Region("lens.id", NAME, 0, n_layer, 1, number_format="0")
    regions = [x, *ln, top, total, prob, ids, logits]
    stack(regions, SUMMARY_TOP + n_layer + 1 + FRAME_ROWS + 1)  # below the summary table
    # Row i: {=MMULT(ln_f.select, block i's output)}: the one-hot row picks the predicting position.
    x.array_fn = lambda: [
        (x.top + i, x.left, x.top + i, x.right, f"MMULT({select.block(NAME)},{outputs[i].block(NAME)})")
        for i in range(n_layer)
    ]
    wte = weight_range(c, "wte")
    logits.array_fn = lambda: [
        (logits.top, logits.left, logits.bottom, logits.right, f"MMULT({wte},TRANSPOSE({ln[-1].block(NAME)}))")
    ]

    def column(i: int) -> str:  # block i's logits, all V rows
        return logits.block(NAME, j0=i, j1=i)

    top.formula = lambda i, j: f"MAX({column(i)})"
    # one-cell CSE formulas: EXP over a range is element-wise in every engine only in an array formula
    total.array_fn = lambda: [
        (total.top + i, total.left, total.top + i, total.left, f"SUM(EXP({column(i)}-{top.at(i, 0, NAME)}))")
        for i in range(n_layer)
    ]
    prob.formula = lambda i, j: f"1/{total.at(i, 0, NAME, col_abs=True)}"
    ids.formula = lambda i, j: f"MATCH({top.at(i, 0, NAME, col_abs=True)},{column(i)},0)-1"
    return [Tab(NAME, OUTPUT, regions)]


def write(out: BookWriter, tab: Tab) -> int:
    """Summary (block, top token, probability) on top; then each step with one row per block; logits last."""
    ws, fmt, layout, trace = out.sheet(tab), out.fmt, out.layout, out.trace
    n_layer, V = layout.config.n_layer, layout.config.vocab_size
    cells.define_names(out, tab)
    texts = layout.texts["lens"] if layout.texts.has_section("lens") else {}
    ws.write_string(0, 0, texts.get("title", "Logit lens"), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    count = 0
    for region in tab.regions:
        count += cells.write_region(out, ws, region)
        cells.note(ws, region.title_row, 0, region.text["explain"])
        if region.rows == n_layer and region.rows != V:  # rows are blocks, not tokens
            ws.write_string(region.header_row, 0, "block", fmt.header)
            ws.write_string(region.header_row, 1, "stops after", fmt.header)
            for i in range(n_layer):
                ws.write_number(region.top + i, 0, i, fmt.label)
                ws.write_string(region.top + i, 1, f"block {i}", fmt.token)
    logits = layout.region("lens.logits")
    for j in range(n_layer):  # its columns are blocks (over the header write_region gave them)
        ws.write_string(logits.header_row, logits.left + j, f"block {j}", fmt.header)
    # The summary: the top token and its probability if the model stopped after each block.
    for col, label in enumerate(["block", "top token", "probability", "token id"]):
        ws.write_string(SUMMARY_TOP - 1, col, label, fmt.header)
    shown = vocab.display_range(V)
    prob, ids = layout.region("lens.prob"), layout.region("lens.id")
    for i in range(n_layer):
        r, tid = SUMMARY_TOP + i, int(trace["lens.id"][i, 0])
        ws.write_string(r, 0, f"after block {i}", fmt.label)
        token = out.tokenizer.display(tid)
        ws.write_formula(r, 1, f"=INDEX({shown},{ids.at(i, 0, NAME)}+1)", fmt.token, token)
        p_top = float(trace["lens.prob"][i, 0])
        ws.write_formula(r, 2, f"={prob.at(i, 0, NAME)}", fmt.number("0.0%"), p_top)
        ws.write_formula(r, 3, f"={ids.at(i, 0, NAME)}", fmt.number("0"), tid)
    ws.conditional_format(
        SUMMARY_TOP,
        2,
        SUMMARY_TOP + n_layer - 1,
        2,
        {
            "type": "data_bar",
            "bar_color": "#F4B183",
            "min_type": "num",
            "min_value": 0,
            "max_type": "num",
            "max_value": 1,
        },
    )
    ws.freeze_panes(0, 2)
    ws.set_column(0, 0, 12)
    ws.set_column(1, 1, 16)
    ws.set_column(2, max(r.right for r in tab.regions), 10)
    return count
