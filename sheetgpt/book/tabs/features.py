"""The Features tab: a sparse autoencoder's features of each token, in formulas (--features, --sae DIR).

The SAE (sheetgpt.sae; its weights on the grey ``sae.*`` tabs, ``tabs.sae_weights``) reads the
residual stream at the input of block L, by reference to that block's stage on the block tabs (the
Steering tab's ``h.L.in`` when the book steers; else ``embed.h`` or ``h.{L-1}.res_2``). Per token row:

- the encoder ``f = ReLU((x - b_dec) W_enc + b_enc)``: x - b_dec per cell, MMULT with W_enc (one CSE
  array), MAX(0, . + b_enc) per cell;
- the 5 largest activations (LARGE per cell), each one's feature number (MATCH, the first on a tie;
  -1 where fewer than 5 are active) and label (INDEX over the labels row above f);
- the decoder ``x_hat = f W_dec + b_dec`` and the row's reconstruction error ||x - x_hat|| / ||x||;
- a heat map of one feature over the tokens: the yellow cell B3 chooses it; a value that is not one of
  the book's feature numbers shows one message in C3 and the heat map is 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import a1, exact
from ...sae import resid_pre
from .. import cells, readback
from ..layout import OUTPUT, Layout, Region, Tab, stack
from . import sae_weights as w

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "Features"
GUIDE_SECTION = "features"  # the Guide shows this section of regions.ini: what to try here
TOO_BIG = "use --sae-features N to keep only N features (the most active on the prompt)"
K = 5  # features shown per row
FEATURE = (2, 1)  # B3: the feature the heat map shows (editable)
STATUS = (2, 2)  # C3: what the heat map shows, or why the value cannot be used
COLUMN = (3, 1)  # B4: the chosen feature's column in the book (0-based), -1 if it is not one of the book's
FIRST_TOP = 8  # the first region's data row


def x_region(layout: Layout, placed: dict[str, Region]) -> Region:
    """The residual stream at the input of the SAE's block, as the block tabs show it."""
    block = layout.sae[0]
    if f"h.{block}.in" in placed:  # a steered book: the block's input after the steering vector
        return placed[f"h.{block}.in"]
    return placed["embed.h"] if block == 0 else placed[f"h.{block - 1}.res_2"]


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    if not layout.sae:
        return []
    T, d, N = layout.T, layout.config.n_embd, layout.sae[1]
    x = x_region(layout, placed)
    rank = dict(col_header=lambda j: j + 1)
    column = Region("sae.col", NAME, COLUMN[0], 1, 1, left=COLUMN[1], number_format="0")
    heat = Region("sae.heat", NAME, 0, T, 1, col_header=lambda j: "activation")
    act = Region("sae.act", NAME, 0, T, K, **rank)
    ids = Region("sae.id", NAME, 0, T, K, number_format="0", **rank)
    error = Region("sae.error", NAME, 0, T, 1, col_header=lambda j: "|x - x_hat| / |x|")
    centered = Region("sae.centered", NAME, 0, T, d)
    pre = Region("sae.pre", NAME, 0, T, N)
    f = Region("sae.f", NAME, 0, T, N, header_rows=2)  # labels, then feature numbers
    dec = Region("sae.dec", NAME, 0, T, d)
    resid = Region("sae.resid", NAME, 0, T, d)
    stack([heat, act, ids, error, centered, pre, f, dec, resid], FIRST_TOP)
    chosen, col = a1.cell(*FEATURE, True, True), a1.cell(*COLUMN, True, True)
    id_row = w.row(layout, w.IDS)
    column.formula = lambda i, j: f"IF(ISNUMBER({chosen}),IFERROR(MATCH({chosen},{id_row},0)-1,-1),-1)"
    # MAX(., 0): INDEX(row, 1, 0) would be the whole row, which an engine that computes both branches of IF
    # (the fast one) would put in one cell
    heat.formula = lambda i, j: f"IF({col}>=0,INDEX({f.row(i, NAME)},1,MAX({col},0)+1),0)"
    act.formula = lambda i, j: f"LARGE({f.row(i, NAME)},{a1.cell(act.header_row, act.left + j, row_abs=True)})"
    ids.formula = lambda i, j: (
        f"IF({act.at(i, j, NAME)}>0,INDEX({id_row},1,MATCH({act.at(i, j, NAME)},{f.row(i, NAME)},0)),-1)"
    )
    error.formula = lambda i, j: (
        f"IF(SUMPRODUCT({x.row(i, NAME)},{x.row(i, NAME)})=0,0,"
        f"SQRT(SUMPRODUCT({resid.row(i, NAME)},{resid.row(i, NAME)})/SUMPRODUCT({x.row(i, NAME)},{x.row(i, NAME)})))"
    )

    def b(name: str, j: int) -> str:  # element j of a bias row: 'sae.b_dec'!C$1
        return a1.sheet_prefix(name) + a1.cell(0, j, row_abs=True, col_abs=False)

    centered.formula = lambda i, j: f"{x.at(i, j, NAME)}-{b(w.B_DEC, j)}"
    pre.array_fn = lambda: [
        (pre.top, pre.left, pre.bottom, pre.right, f"MMULT({centered.block(NAME)},{w.whole(layout, w.W_ENC)})")
    ]
    f.formula = lambda i, j: f"MAX(0,{pre.at(i, j, NAME)}+{b(w.B_ENC, j)})"
    dec.array_fn = lambda: [
        (dec.top, dec.left, dec.bottom, dec.right, f"MMULT({f.block(NAME)},{w.whole(layout, w.W_DEC)})")
    ]
    resid.formula = lambda i, j: f"{x.at(i, j, NAME)}-{dec.at(i, j, NAME)}-{b(w.B_DEC, j)}"
    return [Tab(NAME, OUTPUT, [column, heat, act, ids, error, centered, pre, f, dec, resid])]


def feature_column(ids: np.ndarray, value) -> int:
    """The book's column of feature ``value`` (what B4 computes): -1 for text, or a number not among ``ids``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return -1
    hit = np.nonzero(ids == value)[0]
    return int(hit[0]) if len(hit) else -1


def given(build: Build, inputs: BookInputs):
    """The feature a new book's heat map shows: ``--feature K``, else the CLI's default (build.settings)."""
    return build.settings["features"]


def read_back(book: Book, layout: Layout, inputs: BookInputs):
    """What B3 holds: a number, or the text typed there (then the heat map is 0)."""
    sheet = book.sheets[NAME]
    value = readback.held(sheet, *FEATURE)
    return value if value is not None else sheet.strings.get(FEATURE, "")


def stages(inputs: BookInputs, trace: dict) -> dict:
    """The tab's reference stages from the trace's residual stream and the SAE as the book holds it."""
    s = inputs["sae_weights"]
    W_enc, b_enc, W_dec, b_dec = s[w.W_ENC], s[w.B_ENC][0], s[w.W_DEC], s[w.B_DEC][0]
    ids = s[w.IDS][0]
    x = resid_pre(trace, inputs.layout.sae[0])
    centered = x - b_dec
    pre = exact.matmul(centered, W_enc)
    f = np.maximum(pre + b_enc, 0.0)
    dec = exact.matmul(f, W_dec)
    resid = x - dec - b_dec
    xx = (x * x).sum(axis=1)
    error = np.where(xx == 0, 0.0, np.sqrt((resid * resid).sum(axis=1) / np.where(xx == 0, 1.0, xx)))
    order = np.argsort(-f, axis=1, kind="stable")[:, :K]  # ties: the first column, as MATCH
    act = np.take_along_axis(f, order, axis=1)
    top_ids = np.where(act > 0, ids[order], -1).astype(np.float64)
    col = feature_column(ids, inputs["features"])
    heat = f[:, col] if col >= 0 else np.zeros(len(x))
    return {
        "sae.col": np.array([[col]], dtype=np.float64),
        "sae.heat": heat[:, None],
        "sae.act": act,
        "sae.id": top_ids,
        "sae.error": error[:, None],
        "sae.centered": centered,
        "sae.pre": pre,
        "sae.f": f,
        "sae.dec": dec,
        "sae.resid": resid,
    }


def status_text(ids: np.ndarray, labels: list[str], value) -> str:
    """What C3 shows for the value in B3."""
    col = feature_column(ids, value)
    if col < 0:
        return _refusal(ids)
    return f"heat map of feature {value:g}: {labels[col]}"


def _refusal(ids: np.ndarray) -> str:
    n = len(ids)
    if (ids == np.arange(n)).all():
        return f"type a feature number from 0 to {n - 1} (a whole number); the heat map is off"
    return f"type one of the {n} feature numbers this book holds (the header of the SAE's features, tab sae.ids)"


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, layout, trace = out.sheet(tab), out.fmt, out.layout, out.trace
    texts = layout.texts["features"] if layout.texts.has_section("features") else {}
    sae = out.inputs["sae_weights"]
    ids = sae[w.IDS][0]
    labels = sae[w.LABELS]
    ws.write_string(0, 0, texts.get("title", NAME), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    ws.write_string(FEATURE[0], 0, "feature", fmt.label)
    value = out.inputs["features"]
    if isinstance(value, str):
        ws.write_string(*FEATURE, value, fmt.edit_text)
    else:
        ws.write_number(*FEATURE, value, fmt.edit)
    ws.write_string(COLUMN[0], 0, "its column (-1: none)", fmt.label)
    chosen, col = a1.cell(*FEATURE, True, True), a1.cell(*COLUMN, True, True)
    column, heat, act, top, error, centered, pre, f, dec, resid = tab.regions
    label_row = a1.span(f.header_row - 1, f.left, f.header_row - 1, f.right)
    refusal = _refusal(ids)
    ws.write_formula(
        *STATUS,
        f'=IF({col}<0,"{refusal}","heat map of feature "&{chosen}&": "&INDEX({label_row},1,MAX({col},0)+1))',
        fmt.note,
        status_text(ids, labels, value),
    )
    ws.write_formula(*COLUMN, "=" + column.formula(0, 0), fmt.number("0"), int(trace["sae.col"][0, 0]))
    count = 2
    for region in tab.regions[1:]:
        count += cells.write_region(out, ws, region)
        cells.note(ws, region.title_row, 0, region.text["explain"])
    for region in (heat, act, f):  # white (0) to red (the largest)
        ws.conditional_format(
            region.top,
            region.left,
            region.bottom,
            region.right,
            {
                "type": "2_color_scale",
                "min_color": "#FFFFFF",
                "max_color": "#C00000",
                "min_type": "num",
                "min_value": 0,
            },
        )
    # the heat map's header: the chosen feature
    ws.write_formula(
        heat.header_row,
        heat.left,
        f'=IF({col}<0,"off","feature "&{chosen})',
        fmt.header,
        f"feature {value:g}" if feature_column(ids, value) >= 0 else "off",
    )
    # f's two header rows: each feature's label and number (from sae.ids)
    for j in range(f.cols):
        ws.write_string(f.header_row - 1, f.left + j, labels[j], fmt.label)
        for region in (pre, f):
            ws.write_formula(
                region.header_row,
                region.left + j,
                f"={a1.sheet_prefix(w.IDS)}{a1.cell(0, j, True, True)}",
                fmt.header,
                int(ids[j]),
            )
    # each top feature's label, right of the feature numbers
    left = top.right + 2
    for j in range(K):
        ws.write_string(top.header_row, left + j, f"label {j + 1}", fmt.header)
        for i in range(top.rows):
            a = act.at(i, j, NAME)
            k = int(trace["sae.id"][i, j])
            cached = labels[int(np.nonzero(ids == k)[0][0])] if k >= 0 else ""
            ws.write_formula(
                top.top + i,
                left + j,
                f'=IF({a}>0,INDEX({label_row},1,MATCH({a},{f.row(i, NAME)},0)),"")',
                fmt.token,
                cached,
            )
    cells.define_names(out, tab)
    ws.freeze_panes(0, 2)
    ws.set_column(0, 0, 8)
    ws.set_column(1, 1, 20)
    ws.set_column(2, 2 + K, 10)
    ws.set_column(left, left + K - 1, 26)
    out.done(tab)
    return count + K * top.rows


def extent(layout: Layout) -> tuple[int, int]:
    """The label columns right of the top features (``write``: from the feature numbers' right + 2)."""
    return 0, 2 + K + 1 + K
