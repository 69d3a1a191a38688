"""The Sample tab (generating books): how each generated row chooses its token, greedy or sampled.

Five editable cells (mode, temperature, top-k, top-p, seed), a status message, and per token row:
the generator's state x and u = x / (2^31 - 1), the top CAP logits (LARGE, one cell each) and their
ids (a one-cell SMALL(IF(...)) each, the lower id first on a tie), the weights EXP((v - v1) / T) (0
beyond top-k), their running sums, how many candidates top-p keeps, the candidate u picks, and the
next token: the sampled one, or the argmax when greedy. The Prompt tab's generated rows take that
next token. A view shows one chosen row's candidates with their probabilities, the cumulative
column and where u fell. The rule, and the reference that proves these cells, are in
``sheetgpt.sampling``; defaults are greedy, so the book writes the same continuation as a book
without this tab.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ... import a1, sampling
from ...errors import WorkbookError
from ...sampling import CAP, MAX_SEED, MAX_TEMPERATURE, MIN_TEMPERATURE, MODULUS, MULTIPLIER, SEED_MULTIPLIER
from .. import cells, readback
from ..layout import FRAME_ROWS, INPUT, Layout, Region, Tab, stack
from ..xlsx.worksheet import style_index
from . import logits as logits_tab
from . import prompt, vocab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "Sample"
GUIDE_SECTION = "sample"  # the Guide shows this section of regions.ini: what to try here
LABEL_COL, VALUE_COL, NOTE_COL = 0, 1, 2
MODE_ROW, TEMP_ROW, TOP_K_ROW, TOP_P_ROW, SEED_ROW, STATUS_ROW, OK_ROW = 3, 4, 5, 6, 7, 8, 9
SHOW = (11, 1)  # B12: the row (position) whose choice the view shows
SHOWN_TOP = 16  # the data row of the view's summary (u, kept, picked, next id); the view below it
SETTINGS = (
    (MODE_ROW, "mode", "greedy or sample"),
    (TEMP_ROW, "temperature", f"0: greedy; {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}: softmax(logits / T)"),
    (TOP_K_ROW, "top-k", "keep the k most likely (0 or empty: off)"),
    (TOP_P_ROW, "top-p", "keep the fewest most likely whose probability reaches p (1 or empty: off)"),
    (SEED_ROW, "seed", f"a whole number from 0 to {MAX_SEED}: the generator's start"),
)


def _abs(r: int, c: int = VALUE_COL) -> str:
    return a1.cell(r, c, True, True)


MODE, TEMP, TOP_K, TOP_P, SEED, OK = (_abs(r) for r in (MODE_ROW, TEMP_ROW, TOP_K_ROW, TOP_P_ROW, SEED_ROW, OK_ROW))


def _checks() -> dict[str, str]:
    """Each setting's 'usable' test, nested so that a text never reaches arithmetic."""
    return {
        "mode": f'OR({MODE}="greedy",{MODE}="sample")',
        "temperature": (
            f"IF(ISNUMBER({TEMP}),OR({TEMP}=0,AND({TEMP}>={MIN_TEMPERATURE:g},{TEMP}<={MAX_TEMPERATURE:g})),FALSE)"
        ),
        "top_k": f'IF({TOP_K}="",TRUE,IF(ISNUMBER({TOP_K}),IF({TOP_K}>=0,ROUND({TOP_K},0)={TOP_K},FALSE),FALSE))',
        "top_p": f'IF({TOP_P}="",TRUE,IF(ISNUMBER({TOP_P}),AND({TOP_P}>0,{TOP_P}<=1),FALSE))',
        "seed": f"IF(ISNUMBER({SEED}),IF(AND({SEED}>=0,{SEED}<={MAX_SEED}),ROUND({SEED},0)={SEED},FALSE),FALSE)",
    }


def ok_formula() -> str:
    """1 when the rows sample (mode sample, usable settings, temperature above 0), else 0 (greedy)."""
    return f'IF(AND({",".join(_checks().values())}),IF(AND({MODE}="sample",{TEMP}>0),1,0),0)'


FALLBACK = "Greedy (fallback): "


def status_formula() -> str:
    text = '"Greedy: each generated row takes the most likely next token (type sample into B4 to sample)"'
    text = f'IF({OK}=1,"Sampling: each generated row draws u and takes the candidate u falls on",' + (
        f'IF({MODE}="sample","Temperature 0: greedy",{text}))'
    )
    for key in reversed(list(_checks())):
        text = f'IF(NOT({_checks()[key]}),"{FALLBACK}{sampling.PROBLEMS[key]}",{text})'
    return text


def status_text(s: sampling.Settings) -> str:
    """What ``status_formula`` shows for these settings."""
    why = s.problem()
    if why is not None:
        return FALLBACK + sampling.PROBLEMS[why]
    if s.sampling:
        return "Sampling: each generated row draws u and takes the candidate u falls on"
    if s.mode.lower() == sampling.SAMPLE:
        return "Temperature 0: greedy"
    return "Greedy: each generated row takes the most likely next token (type sample into B4 to sample)"


def candidates(layout: Layout) -> int:
    return min(CAP, layout.config.vocab_size)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    if not layout.generate:
        return []
    T, C = layout.T, candidates(layout)
    k_header = dict(col_header=lambda j: j + 1)
    ok = Region("sample.ok", NAME, OK_ROW, 1, 1, left=VALUE_COL, number_format="0")
    view = Region(
        "sample.view",
        NAME,
        0,
        C,
        5,
        number_format="0.0000",
        col_header=lambda j: ("token id", "logit", "p (T, top-k)", "p (kept)", "cumulative")[j],
    )
    shown = Region(
        "sample.shown",
        NAME,
        0,
        1,
        4,
        number_format="0.000000",
        col_header=lambda j: ("u", "kept", "picked", "next id")[j],
    )
    draw = Region("sample.draw", NAME, 0, T, 2, number_format="0.000000", col_header=lambda j: ("x", "u")[j])
    top = Region("sample.top", NAME, 0, T, C, number_format="0.000", **k_header)
    ids = Region("sample.id", NAME, 0, T, C, number_format="0", **k_header)
    weight = Region("sample.weight", NAME, 0, T, C, number_format="0.0000", **k_header)
    cum = Region("sample.cum", NAME, 0, T, C, number_format="0.0000", **k_header)
    kept = Region("sample.kept", NAME, 0, T, 1, number_format="0")
    pick = Region("sample.pick", NAME, 0, T, 1, number_format="0")
    nxt = Region("sample.next", NAME, 0, T, 1, number_format="0")
    stack([shown, view, draw, top, ids, weight, cum, kept, pick, nxt], SHOWN_TOP)
    after = prompt.predict_after_ref()
    argmax = placed["logits.argmax"]
    ok.formula = lambda i, j: ok_formula()

    def col(t: int) -> str:  # row t's logits: Logits!$E$5:$E$554
        return logits_tab.column_ref(layout, t)

    def k_of(region: Region, j: int) -> str:
        return a1.cell(region.header_row, region.left + j, row_abs=True)

    def draw_formula(i: int, j: int) -> str:
        x = draw.at(i, 0, NAME)
        if j == 1:
            return f'IF(ISNUMBER({x}),{x}/{MODULUS},"")'
        pos = a1.cell(draw.top + i, 0, col_abs=True)
        first = f"MOD(({SEED}+1)*{SEED_MULTIPLIER},{MODULUS})"
        if i == 0:
            return f'IF(AND({OK}=1,{pos}={after}),{first},"")'
        up = draw.at(i - 1, 0, NAME)
        return f'IF({OK}=1,IF({pos}<{after},"",IF({pos}={after},{first},MOD({MULTIPLIER}*{up},{MODULUS}))),"")'

    draw.formula = draw_formula
    # Every formula that reads a row of logits is one cell, computed alike by every engine (IronCalc 0.9
    # gives #N/IMPL! for LARGE with a range of k's and for SMALL(IF(...)) entered over several cells, see
    # docs/compat.md): the k-th largest logit, LARGE(logits, k) with k the column's header; its id, the
    # r-th lowest id holding that value (a one-cell array formula), r = 1 unless candidates before it
    # hold the same value (a tie: lower ids first).
    top.formula = lambda i, j: f"LARGE({col(i)},{k_of(top, j)})"
    first_row = FRAME_ROWS + 2  # the sheet row number of id 0 in a Logits column

    def id_formula(i: int, j: int) -> str:
        v = top.at(i, j, NAME)
        r = f"{k_of(top, j)}-MATCH({v},{top.row(i, NAME)},0)+1"
        return f"SMALL(IF({col(i)}={v},ROW({col(i)})-{first_row}),{r})"

    ids.array_fn = lambda: [
        (ids.top + i, ids.left + j, ids.top + i, ids.left + j, id_formula(i, j)) for i in range(T) for j in range(C)
    ]
    weight.formula = lambda i, j: (
        f'IF({OK}=1,IF(OR({TOP_K}="",{TOP_K}=0,{k_of(weight, j)}<={TOP_K}),'
        f'EXP(({top.at(i, j, NAME)}-{top.at(i, 0, NAME, col_abs=True)})/{TEMP}),0),"")'
    )
    # running sums as one product per row: the weights times a triangle of ones (row index <= column index)
    triangle = f"(ROW({a1.span(0, 0, C - 1, 0)})<=COLUMN({a1.span(0, 0, 0, C - 1)}))*1"
    cum.array_fn = lambda: [
        (cum.top + i, cum.left, cum.top + i, cum.right, f'IF({OK}=1,MMULT({weight.row(i, NAME)},{triangle}),"")')
        for i in range(T)
    ]
    last = lambda i: cum.at(i, C - 1, NAME, col_abs=True)  # noqa: E731
    kept.array_fn = lambda: [
        (
            kept.top + i,
            kept.left,
            kept.top + i,
            kept.left,
            f'IF({OK}=1,MATCH(TRUE,{cum.row(i, NAME)}>=IF({TOP_P}="",1,{TOP_P})*{last(i)},0),"")',
        )
        for i in range(T)
    ]

    def pick_formula(i: int) -> str:
        u, m = draw.at(i, 1, NAME), kept.at(i, 0, NAME)
        return f'IF(ISNUMBER({u}),MATCH(TRUE,{cum.row(i, NAME)}>{u}*INDEX({cum.row(i, NAME)},1,{m}),0),"")'

    pick.array_fn = lambda: [(pick.top + i, pick.left, pick.top + i, pick.left, pick_formula(i)) for i in range(T)]
    nxt.formula = lambda i, j: (
        f"IF(ISNUMBER({pick.at(i, 0, NAME)}),INDEX({ids.row(i, NAME)},1,{pick.at(i, 0, NAME)}),{argmax.at(i, 0, NAME)})"
    )

    # the view: the row in B12
    row = f"{_abs(*SHOW)}+1"

    def at_row(region: Region, j: int | str) -> str:
        return f"INDEX({region.block(NAME)},{row},{j})"

    shown.formula = lambda i, j: (
        at_row(draw, 2),
        at_row(kept, 1),
        at_row(pick, 1),
        at_row(nxt, 1),
    )[j]
    m_cell, k_cell = shown.at(0, 1, NAME, True, True), lambda i: a1.cell(view.top + i, 0, col_abs=True)  # noqa: E731

    def view_formula(i: int, j: int) -> str:
        k = k_cell(i)
        w = at_row(weight, k)
        if j == 0:
            return at_row(ids, k)
        if j == 1:
            return at_row(top, k)
        if j == 2:
            return f'IF(ISNUMBER({w}),{w}/{at_row(cum, C)},"")'
        if j == 3:
            return f'IF(ISNUMBER({w}),IF({k}<={m_cell},{w}/{at_row(cum, m_cell)},0),"")'
        return f'IF(ISNUMBER({w}),IF({k}<={m_cell},{at_row(cum, k)}/{at_row(cum, m_cell)},""),"")'

    view.formula = view_formula
    return [Tab(NAME, INPUT, [ok, shown, view, draw, top, ids, weight, cum, kept, pick, nxt])]


@dataclass(frozen=True)
class SampleInputs:
    """What the tab's editable cells hold: the five settings, and the row (position) the view shows."""

    settings: sampling.Settings
    show: int


def given(build: Build, inputs: BookInputs) -> SampleInputs:
    """The cells of a book being built: ``build --sample ...``'s settings, else greedy; the view shows
    the predicting position's row."""
    return SampleInputs(build.settings.get("sample") or sampling.Settings(), inputs["prompt"].predict_after)


def generation(inputs: BookInputs) -> sampling.Settings:
    """How the book's generated rows choose their tokens (``book.trace``): the tab's settings."""
    return inputs["sample"].settings


def stages(inputs: BookInputs, trace: dict) -> dict[str, np.ndarray]:
    """The tab's checked regions (``book.trace``)."""
    s = inputs["sample"]
    return choice_stages(trace, s.settings, inputs["prompt"].predict_after, s.show)


def choice_stages(trace: dict, s: sampling.Settings, predict_after: int, show: int) -> dict[str, np.ndarray]:
    """The tab's checked regions: ``sampling.stages`` of every row, and the view of row ``show``."""
    out = sampling.stages(trace["logits.all"], s, predict_after)
    C = out["sample.top"].shape[1]
    t = show
    w, cum = out["sample.weight"][t], out["sample.cum"][t]
    m = out["sample.kept"][t, 0]
    view = np.full((C, 5), np.nan)
    view[:, 0], view[:, 1] = out["sample.id"][t], out["sample.top"][t]
    if s.sampling:
        mi = int(m)
        k = np.arange(1, C + 1)
        view[:, 2] = w / cum[C - 1]
        view[:, 3] = np.where(k <= mi, w / cum[mi - 1], 0.0)
        view[:, 4] = np.where(k <= mi, cum / cum[mi - 1], np.nan)
    out["sample.view"] = view
    out["sample.shown"] = np.array([[out["sample.draw"][t, 1], m, out["sample.pick"][t, 0], out["sample.next"][t, 0]]])
    return out


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, layout, trace = out.sheet(tab), out.fmt, out.layout, out.trace
    inputs: SampleInputs = out.inputs["sample"]
    s = inputs.settings
    texts = layout.texts[NAME.lower()] if layout.texts.has_section(NAME.lower()) else {}
    ws.set_column(0, 0, 24)
    ws.set_column(1, 1, 16)
    ws.write_string(0, 0, texts.get("title", NAME), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    for r, label, note in SETTINGS:
        ws.write_string(r, LABEL_COL, label, fmt.label)
        ws.write_string(r, NOTE_COL, note, fmt.note)
    ws.write_string(MODE_ROW, VALUE_COL, str(s.mode), fmt.edit_text)
    ws.write_number(TEMP_ROW, VALUE_COL, float(s.temperature), fmt.edit)
    ws.write_number(TOP_K_ROW, VALUE_COL, int(s.top_k), fmt.edit)
    ws.write_number(TOP_P_ROW, VALUE_COL, float(s.top_p), fmt.edit)
    ws.write_number(SEED_ROW, VALUE_COL, int(s.seed), fmt.edit)
    ws.write_string(STATUS_ROW, LABEL_COL, "status", fmt.label)
    ws.write_formula(STATUS_ROW, VALUE_COL, "=" + status_formula(), fmt.note, status_text(s))
    ok, shown, view, *rows = tab.regions
    ws.write_string(OK_ROW, LABEL_COL, "sampling (1) or greedy (0)", fmt.label)
    ws.write_formula(OK_ROW, VALUE_COL, "=" + ok.formula(0, 0), fmt.number("0"), int(trace["sample.ok"][0, 0]))
    ws.write_string(SHOW[0], LABEL_COL, "show the row after position", fmt.label)
    ws.write_number(*SHOW, inputs.show, fmt.edit)
    ws.write_string(SHOW[0], NOTE_COL, "the choice of the token after this position, below", fmt.note)
    count = 7
    for region in (shown, view, *rows):
        count += cells.write_region(out, ws, region)
        cells.note(ws, region.title_row, 0, region.text["explain"])
        if region in (shown, view):  # whole numbers (ids, counts) in their own format
            _split_format(ws, region, {"sample.shown": (1, 4), "sample.view": (0, 1)}[region.name], fmt)
    # the view's rows: rank k and the candidate's text; where u fell
    texts_range = vocab.display_range(layout.config.vocab_size)
    ws.write_string(view.header_row, 0, "k", fmt.header)
    ws.write_string(view.header_row, 1, "token", fmt.header)
    ws.write_string(view.header_row, view.right + 1, "u", fmt.header)
    v = trace["sample.view"]
    pick = trace["sample.shown"][0, 2]
    for i in range(view.rows):
        r = view.top + i
        ws.write_number(r, 0, i + 1, fmt.label)
        ws.write_formula(
            r, 1, f"=INDEX({texts_range},{a1.cell(r, view.left)}+1)", fmt.token, out.tokenizer.display(int(v[i, 0]))
        )
        here = shown.at(0, 2, NAME, True, True)
        ws.write_formula(
            r,
            view.right + 1,
            f'=IF(ISNUMBER({here}),IF({a1.cell(r, 0)}={here},"<- u fell here",""),"")',
            fmt.note,
            "<- u fell here" if pick == i + 1 else "",
        )
    cells.define_names(out, tab)
    ws.freeze_panes(0, 2)
    ws.set_column(2, 2 + candidates(layout), 11)
    out.done(tab)
    return count


def _split_format(ws, region: Region, whole: tuple[int, int], fmt) -> None:
    """Columns whole[0]..whole[1] - 1 of the region's formulas (just handed to the sheet) shown as whole numbers."""
    block = ws.shared.pop()
    j0, j1 = whole
    C = region.cols
    number = style_index(fmt.number(region.number_format))
    for a, b, style in ((0, j0, number), (j0, j1, style_index(fmt.number("0"))), (j1, C, number)):
        if b > a:
            ws.shared.append(replace(block, rects=[(0, region.rows, a, b)], style=style))


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> SampleInputs:
    """The five editable cells as the book holds them (a number, a text, or None for an empty cell),
    and the row the view shows."""
    sheet = book.sheets[NAME]

    def value(r: int):
        number = readback.held(sheet, r, VALUE_COL)
        if number is not None:
            return number
        if (r, VALUE_COL) in sheet.booleans:
            return bool(sheet.booleans[(r, VALUE_COL)])
        return sheet.strings.get((r, VALUE_COL))

    s = sampling.Settings(*(value(r) for r in (MODE_ROW, TEMP_ROW, TOP_K_ROW, TOP_P_ROW, SEED_ROW)))
    show = readback.number(book, NAME, *SHOW, "show the row after position")
    if show != int(show) or not 0 <= show < layout.T:
        raise WorkbookError(
            f"{NAME}!{a1.cell(*SHOW)} (show the row after position) must be a whole number from 0 to "
            f"{layout.T - 1}, got {show!r}"
        )
    return SampleInputs(s, int(show))
