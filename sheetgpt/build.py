"""Write the workbook: every tab and region of ``stages.Layout``, as formulas over weight tabs.

The formulas come from the stage list; this module only puts them on the sheet with their
frame (titles, explanations, headers, token labels), formats, and cached values taken from
the reference, so that a viewer that does not recalculate still shows the right numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import glob
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xlsxwriter
from xlsxwriter.utility import xl_rowcol_to_cell

from . import __version__, bpe_sheet, fast_xlsx
from .checkpoint import Model
from .errors import SheetGPTError
from .reference import gpt2, with_selected_position, with_teaching_stages
from .stages import (
    COMPUTE,
    GUIDE,
    INPUT,
    OUTPUT,
    PROMPT_TOP,
    WEIGHTS,
    Layout,
    Region,
    quote,
)
from .tokenizer import Tokenizer
from .weight_text import stored_values

TAB_COLORS = {GUIDE: "#7F7F7F", INPUT: "#2E75B6", COMPUTE: "#70AD47", OUTPUT: "#C55A11", WEIGHTS: "#BFBFBF"}


@dataclass
class BuildResult:
    path: Path
    layout: Layout
    trace: dict
    ids: list[int]
    seconds: float
    cells: int


@dataclass
class Prompt:
    """The token rows of a book: ids, the text shown for each, and the predicting position."""

    ids: list[int]
    texts: list[str]
    n_prompt: int  # tokens that came from the prompt; rows after it are padding
    text: str = ""  # the prompt's text (typed-prompt books show it in Prompt!B4)

    @property
    def predict_after(self) -> int:
        return self.n_prompt - 1


def make_prompt(text: str, tokenizer: Tokenizer, context: int | None, n_positions: int) -> Prompt:
    if not text or not text.strip():
        raise SheetGPTError("the prompt is empty; give some text with --prompt")
    ids = tokenizer.encode(text)
    limit = min(context or n_positions, n_positions)
    if len(ids) > limit:
        if context and context < n_positions:
            raise SheetGPTError(
                f"the prompt is {len(ids)} tokens, more than --context {context}; shorten it or raise --context"
            )
        raise SheetGPTError(
            f"the prompt is {len(ids)} tokens, more than the model's n_positions ({n_positions}); shorten it"
        )
    rows = context or len(ids)
    pad = tokenizer.vocab_size - 1  # <|endoftext|> fills rows after the prompt; causal attention ignores them
    all_ids = ids + [pad] * (rows - len(ids))
    return Prompt(all_ids, [tokenizer.display(i) for i in all_ids], len(ids))


class Formats:
    """The few cell formats a book uses, created once per workbook."""

    def __init__(self, wb: xlsxwriter.Workbook):
        self.wb = wb
        self.cache: dict[str, object] = {}
        self.title = wb.add_format({"bold": True, "font_size": 12, "font_color": "#1F3864"})
        self.big = wb.add_format({"bold": True, "font_size": 16, "font_color": "#1F3864"})
        self.note = wb.add_format({"italic": True, "font_color": "#595959"})
        self.header = wb.add_format({"bold": True, "font_color": "#595959", "align": "center", "bottom": 1})
        self.label = wb.add_format({"font_color": "#595959"})
        self.token = wb.add_format({"bold": True})
        self.edit = wb.add_format({"bg_color": "#FFF2CC", "border": 1, "bold": True})
        self.link = wb.add_format({"font_color": "blue", "underline": 1})
        self.text = wb.add_format({})

    def number(self, num_format: str):
        if num_format not in self.cache:
            self.cache[num_format] = self.wb.add_format({"num_format": num_format})
        return self.cache[num_format]

    def header_number(self, num_format: str):
        """A header that is a number shown through ``num_format`` (3 as "rank 3")."""
        key = "header " + num_format
        if key not in self.cache:
            self.cache[key] = self.wb.add_format(
                {"bold": True, "font_color": "#595959", "align": "center", "bottom": 1, "num_format": num_format}
            )
        return self.cache[key]


def build_workbook(
    model: Model,
    tokenizer: Tokenizer,
    prompt_text: str,
    out_path: str | Path,
    *,
    context: int | None = None,
    logits_all: bool = False,
    force: bool = False,
    source: str = "",
    progress: Callable[[int, str], None] | None = None,
    typed_prompt: bool | None = False,
) -> BuildResult:
    """Write the whole book to out_path (via a temporary file renamed at the end)."""
    started = time.perf_counter()
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".xlsx":
        raise SheetGPTError(f"{out_path}: the output must be an .xlsx file")
    if out_path.exists() and not force:
        raise SheetGPTError(f"{out_path} exists; pass --force to overwrite it")
    if out_path.is_dir():
        raise SheetGPTError(f"{out_path} is a directory; give a file name ending in .xlsx")
    if tokenizer.vocab_size != model.config.vocab_size:
        raise SheetGPTError(
            f"{model.path}: the tokenizer has {tokenizer.vocab_size} tokens but config.json says vocab_size "
            f"{model.config.vocab_size}"
        )
    typed, context = plan_typed_prompt(prompt_text, tokenizer, context, model.config.n_positions, typed_prompt)
    prompt = make_prompt(prompt_text, tokenizer, context, model.config.n_positions)
    prompt.text = prompt_text
    layout = Layout(model.config, len(prompt.ids), logits_all, typed)
    stored = {name: stored_values(value) for name, value in model.flat.items()}
    trace = gpt2(prompt.ids, model.__class__(model.config, stored, model.path).params, model.config)
    trace = with_selected_position(trace, prompt.predict_after)
    if typed:
        trace |= bpe_sheet.reference(prompt_text, tokenizer, typed, len(prompt.ids))
    trace = with_teaching_stages(trace, stored, layout, prompt.predict_after, embedding_tokens(tokenizer, prompt))

    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SheetGPTError(f"{out_path}: cannot create its directory ({exc.strerror or exc})") from None
    _remove_stale_parts(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    from xlsxwriter.exceptions import FileCreateError

    from .safe_io import path_text, write_error

    try:
        cells = _write(tmp, layout, prompt, tokenizer, stored, trace, source or path_text(model.path), progress)
        os.replace(tmp, out_path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, FileCreateError)):  # full disk, read-only place, name too long
            raise write_error(out_path, exc) from None
        raise
    return BuildResult(out_path, layout, trace, prompt.ids, time.perf_counter() - started, cells)


def _remove_stale_parts(out_path: Path) -> None:
    """Delete the temporary files (.NAME.PID.part, .NAME.PID.part.skeleton) a killed build left
    beside out_path; those of a PID still running belong to another build and stay."""
    for p in out_path.parent.glob(f".{glob.escape(out_path.name)}.*.part*"):
        pid = p.name[len(out_path.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or not p.name.endswith((".part", ".part.skeleton")):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            pass


# Per-cell formula regions go out as shared formulas merged into the sheets by fast_xlsx (False:
# every cell through xlsxwriter's write_formula, the old path, kept for tests and as a fallback).
SHARED_FORMULAS = True
# Cells of a shared formula checked against region.formula(i, j) at build time: "sample" (each
# rectangle's edges, diagonal and a seeded sample; every cell of small ones) or "all".
SHARED_VERIFY = "sample"


def _write(path, layout: Layout, prompt: Prompt, tokenizer: Tokenizer, stored, trace, source, progress) -> int:
    """xlsxwriter writes the frames of every tab to a skeleton book; fast_xlsx then copies its
    members into ``path``, streams the weight tabs' worksheets in their place and merges the
    compute tabs' per-cell formulas (as shared formulas) into theirs."""
    path = Path(path)
    skeleton = path.with_name(path.name + ".skeleton")
    try:
        cells, weights, formulas = _write_skeleton(skeleton, layout, prompt, tokenizer, stored, trace, source, progress)
        cells += fast_xlsx.assemble(
            str(skeleton),
            str(path),
            weights,
            progress=(lambda tab: progress(1, tab)) if progress else None,
            formulas=formulas,
            verify=SHARED_VERIFY,
        )
    finally:
        skeleton.unlink(missing_ok=True)
    return cells


def _write_skeleton(path, layout: Layout, prompt: Prompt, tokenizer: Tokenizer, stored, trace, source, progress):
    """The book with empty weight tabs and without the compute tabs' per-cell formulas; returns
    (cells written, {worksheet member: (tab, values)}, {worksheet member: (tab, formula blocks)})."""
    wb = xlsxwriter.Workbook(
        str(path),
        {
            "use_future_functions": False,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
            "constant_memory": False,
        },
    )
    fmt = Formats(wb)
    sheets = {}
    sheet_class = fast_xlsx.FormulaSheet if SHARED_FORMULAS else None
    for tab in layout.tabs:
        ws = wb.add_worksheet(tab.name, worksheet_class=sheet_class)
        ws.set_tab_color(TAB_COLORS[tab.kind])
        sheets[tab.name] = ws
    cells = 0
    _write_guide(sheets[layout.GUIDE], layout, prompt, fmt, source)
    if layout.typed:
        _write_typed_prompt(sheets[layout.PROMPT], layout, prompt, fmt)
        _write_bpe(sheets, layout, tokenizer, prompt, trace, fmt)
    else:
        _write_prompt(sheets[layout.PROMPT], layout, prompt, fmt)
    _write_tokenize(sheets[layout.TOKENIZE], tokenizer, prompt, fmt)
    for tab in layout.compute_tabs():
        if tab.kind == INPUT:
            continue  # the Prompt tab is written by _write_prompt
        ws = sheets[tab.name]
        if tab.name in (layout.LENS, layout.EMBEDDINGS):  # the teaching tabs lay themselves out
            cells += _write_teaching_tab(wb, ws, layout, tab, trace, prompt, tokenizer, fmt)
            continue
        for region in tab.regions:
            if tab.name == layout.PREDICT:
                cells += _write_predict_region(ws, layout, region, trace, tokenizer, fmt)
            else:
                cells += _write_region(ws, layout, region, trace, prompt, tokenizer, fmt)
            wb.define_name(region.name, f"={quote(tab.name)}{_abs(region)}")
        if tab.name == layout.PREDICT:
            _write_top_k(wb, ws, layout, trace, tokenizer, fmt)
        if progress:
            progress(1, tab.name)
        ws.freeze_panes(0, 2)
        ws.set_column(0, 0, 5)
        ws.set_column(1, 1, 14)
        ws.set_column(2, max(r.right for r in tab.regions), 9)
    _write_vocab(sheets[layout.VOCAB], tokenizer, fmt)
    _write_notes(sheets, layout)
    # Weight tabs stay empty here; xlsxwriter names worksheet parts sheet1.xml, sheet2.xml, ... in order.
    weights = {
        f"xl/worksheets/sheet{sheets[tab.name].index + 1}.xml": (tab.name, stored[tab.name].reshape(tab.shape))
        for tab in layout.weight_tabs()
    }
    formulas = {
        f"xl/worksheets/sheet{ws.index + 1}.xml": (name, ws.shared)
        for name, ws in sheets.items()
        if getattr(ws, "shared", None)
    }
    wb.close()
    return cells, weights, formulas


def _abs(region: Region) -> str:
    return (
        xl_rowcol_to_cell(region.top, region.left, True, True)
        + ":"
        + xl_rowcol_to_cell(region.bottom, region.right, True, True)
    )


def _write_region(ws, layout: Layout, region: Region, trace, prompt: Prompt, tokenizer, fmt) -> int:
    title_row = region.top - region.header_rows - 2
    ws.write_string(title_row, 0, f"{region.step} · {region.text['title']}", fmt.title)
    ws.write_string(title_row + 1, 0, region.text["explain"], fmt.note)
    head = region.top - 1
    vocab_rows = region.rows == layout.config.vocab_size and region.rows != layout.T
    # Row labels: position and token for token rows, id and token for vocabulary rows.
    if vocab_rows:
        ws.write_string(head, 0, "id", fmt.header)
        ws.write_string(head, 1, "token", fmt.header)
        for i in range(region.rows):
            ws.write_number(region.top + i, 0, i, fmt.label)
            ws.write_string(region.top + i, 1, tokenizer.display(i), fmt.token)
    elif region.rows == layout.T:
        ws.write_string(head, 0, "pos", fmt.header)
        ws.write_string(head, 1, "token", fmt.header)
        for i in range(region.rows):
            ws.write_number(region.top + i, 0, i, fmt.label)
            ws.write_formula(
                region.top + i, 1, "=" + layout.prompt_text(i, region.tab, True), fmt.token, prompt.texts[i]
            )
    _write_headers(ws, layout, region, prompt, fmt)
    grid = region.grid(trace[region.name])
    num = fmt.number(region.number_format)
    shared = getattr(ws, "shared", None)
    if region.formula is not None and shared is not None:  # merged in later by fast_xlsx.assemble
        rects = (
            [
                (
                    0,
                    region.rows,
                    region.head_left(h) - region.left,
                    region.head_left(h) - region.left + region.block_cols,
                )
                for h in range(region.heads)
            ]
            if region.heads
            else [(0, region.rows, 0, region.cols)]
        )
        shared.append(fast_xlsx.FormulaBlock(region.top, region.left, grid, num._get_xf_index(), rects, region.formula))
    elif region.formula is not None:
        for i in range(region.rows):
            for j in region.columns():
                value = grid[i, j]
                cached = "" if np.isnan(value) else float(value)
                ws.write_formula(region.top + i, region.left + j, "=" + region.formula(i, j), num, cached)
    if region.arrays and shared is not None:  # the same, each cell of the range with its own cached value
        shared.append(fast_xlsx.FormulaBlock(region.top, region.left, grid, num._get_xf_index(), arrays=region.arrays))
    else:
        for r0, c0, r1, c1, text in region.arrays:
            ws.write_array_formula(
                r0, c0, r1, c1, "{=" + text + "}", num, float(grid[r0 - region.top, c0 - region.left])
            )
    if region.name.endswith(".weights"):  # attention heatmap, one colour scale per head
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


def _write_predict_region(ws, layout: Layout, region: Region, trace, tokenizer, fmt) -> int:
    """Predict tab: temperature, largest logit and sum as labelled cells; probabilities down the rows."""
    value = trace[region.name]
    num = fmt.number(region.number_format)
    if region.rows == 1:
        ws.write_string(region.top, 0, region.text["title"], fmt.label)
        ws.write_formula(region.top, region.left, "=" + region.formula(0, 0), num, float(value.ravel()[0]))
        return 1
    ws.write_string(region.top - 3, 0, region.text["title"], fmt.title)
    ws.write_string(region.top - 2, 0, region.text["explain"], fmt.note)
    for col, label in enumerate(["id", "token", "probability"]):
        ws.write_string(region.top - 1, col, label, fmt.header)
    for i in range(region.rows):
        ws.write_number(region.top + i, 0, i, fmt.label)
        ws.write_string(region.top + i, 1, tokenizer.display(i), fmt.token)
        ws.write_formula(region.top + i, region.left, "=" + region.formula(i, 0), num, float(value[i, 0]))
    return region.rows


def _write_top_k(wb, ws, layout: Layout, trace, tokenizer, fmt) -> None:
    """The top-k table (LARGE / MATCH / INDEX) and a bar chart of it."""
    probs_region = layout.regions["predict.probs"]
    probs = _abs(probs_region)
    V = layout.config.vocab_size
    vocab = quote(layout.VOCAB) + f"$B$1:$B${V}"
    ws.write_string(0, 0, "Next-token prediction", fmt.big)
    ws.write_string(1, 0, "Softmax of the logits, with a temperature you can edit (yellow).", fmt.note)
    ws.write_string(layout.TEMPERATURE[0], 0, "temperature", fmt.label)
    ws.write_number(*layout.TEMPERATURE, 1.0, fmt.edit)
    top = probs_region.top
    r0, c0 = top - 1, 5  # header row; columns F..I
    for k, label in enumerate(["rank", "probability", "token id", "token"]):
        ws.write_string(r0, c0 + k, label, fmt.header)
    ws.write_string(r0 - 2, c0, f"Top {layout.TOP_K}", fmt.title)
    p = trace["predict.probs"][:, 0]
    order = np.argsort(-p, kind="stable")
    pct = fmt.number("0.00%")
    for k in range(min(layout.TOP_K, V)):
        r = top + k
        prob, tid = xl_rowcol_to_cell(r, c0 + 1), xl_rowcol_to_cell(r, c0 + 2)
        ws.write_number(r, c0, k + 1, fmt.label)
        ws.write_formula(r, c0 + 1, f"=LARGE({probs},{k + 1})", pct, float(p[order[k]]))
        ws.write_formula(r, c0 + 2, f"=MATCH({prob},{probs},0)-1", fmt.number("0"), int(order[k]))
        ws.write_formula(r, c0 + 3, f"=INDEX({vocab},{tid}+1)", fmt.token, tokenizer.display(int(order[k])))
    ws.set_column(0, 0, 22)
    ws.set_column(1, 1, 16)
    ws.set_column(c0 + 3, c0 + 3, 16)
    n = min(layout.TOP_K, V)
    chart = wb.add_chart({"type": "bar"})
    chart.add_series(
        {
            "name": "probability",
            "categories": [layout.PREDICT, top, c0 + 3, top + n - 1, c0 + 3],
            "values": [layout.PREDICT, top, c0 + 1, top + n - 1, c0 + 1],
            "fill": {"color": "#C55A11"},
            "data_labels": {"value": True, "num_format": "0.0%"},
        }
    )
    chart.set_title({"name": "Next token: top probabilities"})
    chart.set_y_axis({"reverse": True})
    chart.set_x_axis({"num_format": "0%", "min": 0})
    chart.set_legend({"none": True})
    ws.insert_chart(top + n + 2, c0, chart, {"x_scale": 1.2, "y_scale": 1.2})


def _write_headers(ws, layout: Layout, region: Region, prompt: Prompt, fmt) -> None:
    head = region.top - 1
    name = region.name
    if region.heads:
        for h in range(region.heads):
            c0 = region.head_left(h)
            ws.write_string(head - 2, c0, f"head {h}", fmt.title)
            for k in range(region.block_cols):
                ws.write_formula(
                    head - 1, c0 + k, "=" + layout.prompt_text(k, region.tab, True), fmt.header, prompt.texts[k]
                )
                ws.write_number(head, c0 + k, k, fmt.header)
        return
    d, hd = layout.config.n_embd, layout.config.head_dim
    for j in range(region.cols):
        if name.endswith("attn.c_attn"):
            part, rest = divmod(j, d)
            label = f"{'qkv'[part]}{rest // hd}.{rest % hd}"
        elif name.endswith("attn.merged"):
            label = f"h{j // hd}.{j % hd}"
        elif name == "ln_f.select":
            ws.write_number(head, region.left + j, j, fmt.header)
            continue
        elif name == "logits.all":
            label = f"after pos {j}"
        elif region.cols == 1:
            label = name.rsplit(".", 1)[-1]
        else:
            ws.write_number(head, region.left + j, j, fmt.header)
            continue
        ws.write_string(head, region.left + j, label, fmt.header)


def built_at() -> str:
    """The build time shown in the Guide; SOURCE_DATE_EPOCH (the reproducible-builds convention) fixes it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and epoch.isdigit():
        return (
            _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")
        )
    return _dt.datetime.now().isoformat(timespec="seconds")


def _write_guide(ws, layout: Layout, prompt: Prompt, fmt, source: str) -> None:
    c = layout.config
    ws.set_column(0, 0, 30)
    ws.set_column(1, 1, 60)
    ws.write_string(0, 0, "sheetgpt: GPT-2 as a spreadsheet", fmt.big)
    lines = [
        "Every number on the green tabs is computed by an ordinary formula from the grey weight tabs.",
        "Click any cell to see its formula. Each block tab shows GPT-2's steps in order, top to bottom.",
        "To try another prompt: edit a token text on the Prompt tab (yellow cells), then recalculate",
        "(LibreOffice: Data > Calculate > Recalculate Hard, Ctrl+Shift+F9; Excel: Ctrl+Alt+F9).",
    ]
    if layout.typed:
        lines[2] = "To try another prompt: type any text into the yellow cell B4 of the Prompt tab, then recalculate"
    for k, line in enumerate(lines):
        ws.write_string(1 + k, 0, line, fmt.note)
    row = 6
    ws.write_string(row, 0, "Predicted next token", fmt.title)
    ws.write_formula(
        row,
        1,
        f"={quote(layout.PREDICT)}{xl_rowcol_to_cell(layout.regions['predict.probs'].top, 8, True, True)}",
        fmt.edit,
    )
    ws.write_string(row + 1, 0, "Recalculated?", fmt.label)
    # Sentinel: its cached value is deliberately wrong (0); any recalculation shows 2.
    ws.write_formula(row + 1, 1, "=1+1", fmt.text, 0)
    ws.write_string(row + 1, 2, "shows 2 once the book has been recalculated", fmt.note)
    row += 3
    ws.write_string(row, 0, "Model configuration", fmt.title)
    config_rows = [
        ("n_layer", c.n_layer),
        ("n_head", c.n_head),
        ("n_embd", c.n_embd),
        ("n_positions", c.n_positions),
        ("vocab_size", c.vocab_size),
        ("layer_norm_epsilon", c.layer_norm_epsilon),
        ("token rows", layout.T),
        ("logits for every position", 1 if layout.logits_all else 0),
    ]
    if layout.typed:  # the BPE tab's limits (check reads them back)
        config_rows += list(zip(bpe_sheet.GUIDE_LABELS, dataclasses.astuple(layout.typed)))
    for k, (key, value) in enumerate(config_rows, start=1):
        ws.write_string(row + k, 0, key, fmt.label)
        ws.write_number(row + k, 1, value)
    row += len(config_rows) + 2
    ws.write_string(row, 0, "Prompt", fmt.title)
    ws.write_string(row, 1, "".join(prompt.texts[: prompt.n_prompt]), fmt.text)
    row += 2
    ws.write_string(row, 0, "Tabs", fmt.title)
    for k, tab in enumerate(layout.tabs[1:], start=1):
        ws.write_url(row + k, 0, f"internal:{quote(tab.name)}A1", fmt.link, tab.name)
        what = {INPUT: "input", COMPUTE: "computation", OUTPUT: "output", WEIGHTS: "weights"}[tab.kind]
        regions = ", ".join(r.text["title"] for r in tab.regions[:6]) + (", ..." if len(tab.regions) > 6 else "")
        ws.write_string(row + k, 1, f"{what}: {regions}" if regions else what, fmt.label)
    row += len(layout.tabs) + 1
    ws.write_string(row, 0, "Provenance", fmt.title)
    prov = [("sheetgpt", __version__), ("model", source), ("built", built_at())]
    for k, (key, value) in enumerate(prov, start=1):
        ws.write_string(row + k, 0, key, fmt.label)
        ws.write_string(row + k, 1, value)
    ws.activate()


def _write_prompt(ws, layout: Layout, prompt: Prompt, fmt) -> None:
    ws.set_column(0, 0, 8)
    ws.set_column(1, 1, 18)
    ws.set_column(2, 2, 10)
    ws.set_column(3, 3, 60)
    ws.write_string(0, 0, "Prompt: one token per row", fmt.big)
    ws.write_string(
        1, 0, "Edit a token text (yellow), then recalculate: its id is looked up in the vocab tab.", fmt.note
    )
    ws.write_string(layout.PREDICT_AFTER[0], 0, "Predict the token after position", fmt.label)
    ws.write_number(*layout.PREDICT_AFTER, prompt.predict_after, fmt.edit)
    head = PROMPT_TOP - 1
    for col, label in enumerate(["pos", "token (edit)", "token id", "note"]):
        ws.write_string(head, col, label, fmt.header)
    # token texts are always written as text, never as a formula
    _write_token_rows(ws, layout, prompt, fmt, lambda r, t: ws.write_string(r, 1, prompt.texts[t], fmt.edit))


def _write_token_rows(ws, layout: Layout, prompt: Prompt, fmt, write_text) -> None:
    """The Prompt tab's token rows: position, token text (write_text(row, t)), id by EXACT lookup, note."""
    after = "(after the predicting position: ignored)"
    for t in range(len(prompt.ids)):
        r = PROMPT_TOP + t
        ws.write_number(r, 0, t, fmt.label)
        write_text(r, t)
        ws.write_array_formula(r, 2, r, 2, "{=" + layout.regions["prompt.ids"].arrays[t][4] + "}", None, prompt.ids[t])
        idcell = xl_rowcol_to_cell(r, 2)
        ws.write_formula(
            r,
            3,
            f'=IF({idcell}<0,"not in the vocabulary: this row uses token 0; copy a token text from the vocab tab",'
            f'IF({xl_rowcol_to_cell(r, 0)}>$C${layout.PREDICT_AFTER[0] + 1},"{after}",""))',
            fmt.note,
            "" if t <= prompt.predict_after else after,
        )
    ws.freeze_panes(PROMPT_TOP, 0)


def _write_vocab(ws, tokenizer: Tokenizer, fmt) -> None:
    ws.set_column(0, 0, 8)
    ws.set_column(1, 2, 20)
    for i in range(tokenizer.vocab_size):
        ws.write_number(i, 0, i)
        ws.write_string(i, 1, tokenizer.display(i))
        ws.write_string(i, 2, tokenizer.token_str(i))


# ---------------------------------------------------------------- teaching tabs: Tokenize, Logit lens, Embeddings

# Default tokens of the Embeddings tab: the first of each list whose words are all single tokens.
EMBEDDING_PAIRS = [
    (" king", " queen"),
    (" man", " woman"),
    (" He", " She"),
    (" quick", " quickly"),
    (" slow", " slowly"),
    (" cat", " dog"),
    (" Paris", " France"),
    (" Mike", " Sally"),
    (" the", " a"),
    (" big", " small"),
]
EMBEDDING_ANALOGIES = [
    (" king", " man", " woman"),
    (" quickly", " quick", " slow"),
    (" He", " Mike", " Sally"),
    (" Paris", " France", " Italy"),
]


def embedding_tokens(tokenizer: Tokenizer, prompt: Prompt, n_pairs: int = 4) -> list[int]:
    """Token ids for the Embeddings tab: pairs, a query and an analogy (a, b, c) that the vocabulary has."""

    def known(words):
        ids = [tokenizer.id_for_display(w) for w in words]
        return None if None in ids else ids

    pairs = [ids for ids in map(known, EMBEDDING_PAIRS) if ids]
    analogy = next((ids for ids in map(known, EMBEDDING_ANALOGIES) if ids), None)
    spare = list(dict.fromkeys(prompt.ids[: prompt.n_prompt])) + list(
        range(tokenizer.vocab_size - 2, -1, -1)
    )  # not <|endoftext|>
    while len(pairs) < n_pairs:  # a model without these words: pair up the prompt's tokens, then any
        pairs.append([spare[(2 * len(pairs)) % len(spare)], spare[(2 * len(pairs) + 1) % len(spare)]])
    if analogy is None:
        analogy = [spare[k % len(spare)] for k in range(3)]
    return [i for pair in pairs[:n_pairs] for i in pair] + [analogy[0]] + analogy


def _write_teaching_tab(wb, ws, layout: Layout, tab, trace, prompt: Prompt, tokenizer, fmt) -> int:
    for region in tab.regions:
        wb.define_name(region.name, f"={quote(tab.name)}{_abs(region)}")
    if tab.name == layout.LENS:
        return _write_lens(ws, layout, tab, trace, prompt, tokenizer, fmt)
    return _write_embeddings(ws, layout, tab, trace, tokenizer, fmt)


def _cells(ws, region: Region, trace, num) -> int:
    """A region's formulas (per cell or CSE arrays) with the reference values as cached results."""
    grid = region.grid(trace[region.name])
    if region.formula is not None:
        for i in range(region.rows):
            for j in region.columns():
                ws.write_formula(region.top + i, region.left + j, "=" + region.formula(i, j), num, float(grid[i, j]))
    for r0, c0, r1, c1, text in region.arrays:
        ws.write_array_formula(r0, c0, r1, c1, "{=" + text + "}", num, float(grid[r0 - region.top, c0 - region.left]))
    return region.rows * len(region.columns())


def _note(ws, row: int, col: int, text: str) -> None:
    if text:
        ws.write_comment(row, col, text, {"author": "sheetgpt", "x_scale": 2.5, "y_scale": 1.2})


def _write_lens(ws, layout: Layout, tab, trace, prompt: Prompt, tokenizer, fmt) -> int:
    """Summary (block, top token, probability) on top; then each step with one row per block; logits last."""
    L, V = layout.config.n_layer, layout.config.vocab_size
    regions = {r.name: r for r in tab.regions}
    texts = layout.texts["lens"] if layout.texts.has_section("lens") else {}
    ws.write_string(0, 0, texts.get("title", "Logit lens"), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    cells = 0
    for region in tab.regions:
        cells += _write_region(ws, layout, region, trace, prompt, tokenizer, fmt)
        _note(ws, region.top - region.header_rows - 2, 0, region.text["explain"])
        if region.rows == L and region.rows != V:  # rows are blocks, not tokens
            ws.write_string(region.top - 1, 0, "block", fmt.header)
            ws.write_string(region.top - 1, 1, "stops after", fmt.header)
            for i in range(L):
                ws.write_number(region.top + i, 0, i, fmt.label)
                ws.write_string(region.top + i, 1, f"block {i}", fmt.token)
    logits = regions["lens.logits"]
    for j in range(L):
        ws.write_string(logits.top - 1, logits.left + j, f"block {j}", fmt.header)
    # The summary: the top token and its probability if the model stopped after each block.
    head = layout.LENS_SUMMARY_TOP - 1
    for col, label in enumerate(["block", "top token", "probability", "token id"]):
        ws.write_string(head, col, label, fmt.header)
    vocab = quote(layout.VOCAB) + f"$B$1:$B${V}"
    prob, ids = regions["lens.prob"], regions["lens.id"]
    for i in range(L):
        r, tid = layout.LENS_SUMMARY_TOP + i, int(trace["lens.id"][i, 0])
        ws.write_string(r, 0, f"after block {i}", fmt.label)
        ws.write_formula(r, 1, f"=INDEX({vocab},{ids.at(i, 0, tab.name)}+1)", fmt.token, tokenizer.display(tid))
        ws.write_formula(r, 2, f"={prob.at(i, 0, tab.name)}", fmt.number("0.0%"), float(trace["lens.prob"][i, 0]))
        ws.write_formula(r, 3, f"={ids.at(i, 0, tab.name)}", fmt.number("0"), tid)
    ws.conditional_format(
        layout.LENS_SUMMARY_TOP,
        2,
        layout.LENS_SUMMARY_TOP + L - 1,
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
    return cells


def _write_embeddings(ws, layout: Layout, tab, trace, tokenizer, fmt) -> int:
    """Editable tokens with their wte rows; pair cosines; nearest tokens to a query and to a - b + c."""
    V, d = layout.config.vocab_size, layout.config.n_embd
    name = tab.name
    R = {r.name: r for r in tab.regions}
    ids = [int(x) for x in trace["emb.ids"][:, 0]]
    texts = layout.texts["emb"] if layout.texts.has_section("emb") else {}
    ws.write_string(0, 0, texts.get("title", "Token embeddings"), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    cells = 0
    for region in tab.regions:
        cells += _cells(ws, region, trace, fmt.number(region.number_format))

    def frame(region: Region, col: int, headers: list[str]) -> None:
        ws.write_string(region.top - 3, col, region.text["title"], fmt.title)
        _note(ws, region.top - 3, col, region.text["explain"])
        ws.write_string(region.top - 2, col, region.text["explain"], fmt.note)
        for k, label in enumerate(headers):
            ws.write_string(region.top - 1, col + k, label, fmt.header)

    # Section 1: the editable tokens, their ids, lengths and embedding vectors; a - b + c below them.
    vec, top = R["emb.vectors"], layout.EMB_TOP
    frame(vec, 0, ["role", "token (edit)", "id", "length"])
    for j in range(d):
        ws.write_number(top - 1, vec.left + j, j, fmt.header)
    for k, role in enumerate(layout.emb_roles):
        ws.write_string(top + k, 0, role, fmt.label)
        ws.write_string(top + k, layout.EMB_TEXT_COL, tokenizer.display(max(ids[k], 0)), fmt.edit)
    ws.write_string(R["emb.analogy"].top, 0, "a - b + c", fmt.title)
    ws.write_string(R["emb.analogy"].top, 1, "(analogy)", fmt.label)
    for region in (R["emb.ids"], R["emb.lengths"], R["emb.analogy"]):
        _note(ws, region.top - 1 if region.top == top else region.top, region.left, region.text["explain"])

    def token_text(row: int) -> str:
        return xl_rowcol_to_cell(row, layout.EMB_TEXT_COL, False, True)

    # Section 2: cosine similarity of each pair.
    pairs = R["emb.pairs"]
    frame(pairs, 0, ["pair", "token a", "token b", "cosine"])
    for k in range(layout.EMB_PAIRS):
        r = pairs.top + k
        ws.write_number(r, 0, k + 1, fmt.label)
        for side in range(2):
            ws.write_formula(
                r,
                1 + side,
                "=" + token_text(top + 2 * k + side),
                fmt.token,
                tokenizer.display(max(ids[2 * k + side], 0)),
            )
    ws.conditional_format(
        pairs.top,
        pairs.left,
        pairs.bottom,
        pairs.left,
        {
            "type": "3_color_scale",
            "min_color": "#5B9BD5",
            "mid_color": "#FFFFFF",
            "max_color": "#C00000",
            "min_type": "num",
            "min_value": -1,
            "mid_type": "num",
            "mid_value": 0,
            "max_type": "num",
            "max_value": 1,
        },
    )

    # Section 3: the nearest tokens (LARGE / MATCH / INDEX) to the query token and to a - b + c.
    vocab = quote(layout.VOCAB) + f"$B$1:$B${V}"
    q_row = top + layout.emb_query
    abc = [R["emb.ids"].at(len(ids) - 3 + n, 0, name, True, True) for n in range(3)]
    for which, col, note in (
        ("query", 0, f'IF({{id}}={R["emb.ids"].at(layout.emb_query, 0, name, True, True)},"(the token itself)","")'),
        ("analogy", 6, f'IF(OR({{id}}={abc[0]},{{id}}={abc[1]},{{id}}={abc[2]}),"(a, b or c)","")'),
    ):
        region, id_region = R[f"emb.near.{which}"], R[f"emb.near.{which}.id"]
        frame(region, col, ["rank", "token", "id", "cosine", ""])
        for k in range(layout.EMB_NEAREST):
            r = region.top + k
            tid = int(trace[f"emb.near.{which}.id"][k, 0])
            idc = xl_rowcol_to_cell(r, id_region.left)
            ws.write_number(r, col, k + 1, fmt.label)
            ws.write_formula(r, col + 1, f"=INDEX({vocab},{idc}+1)", fmt.token, tokenizer.display(tid))
            ws.write_formula(r, col + 4, "=" + note.format(id=idc), fmt.note, "")
        ws.conditional_format(
            region.top,
            region.left,
            region.bottom,
            region.left,
            {
                "type": "data_bar",
                "bar_color": "#9DC3E6",
                "min_type": "num",
                "min_value": 0,
                "max_type": "num",
                "max_value": 1,
            },
        )
    ws.write_formula(
        R["emb.near.query"].top - 3,
        0,
        f'="Nearest tokens to "&{token_text(q_row)}',
        fmt.title,
        "Nearest tokens to " + tokenizer.display(max(ids[layout.emb_query], 0)),
    )

    # Section 4: every vocabulary row: its length and its cosine with the query and with a - b + c.
    norms, cos = R["emb.norms"], R["emb.cos"]
    frame(norms, 0, ["id", "token", "length"])
    ws.write_formula(
        cos.top - 1,
        cos.left,
        f'="cosine with "&{token_text(q_row)}',
        fmt.header,
        "cosine with " + tokenizer.display(max(ids[layout.emb_query], 0)),
    )
    ws.write_string(cos.top - 1, cos.left + 1, "cosine with a - b + c", fmt.header)
    _note(ws, cos.top - 1, cos.left, cos.text["explain"])
    for i in range(V):
        ws.write_number(norms.top + i, 0, i, fmt.label)
        ws.write_string(norms.top + i, 1, tokenizer.display(i), fmt.token)
    ws.freeze_panes(0, 2)
    ws.set_column(0, 0, 16)
    ws.set_column(1, 1, 16)
    ws.set_column(2, 2, 8)
    ws.set_column(3, 4, 12)
    ws.set_column(5, max(9, vec.right), 9)
    ws.set_column(7, 7, 16)
    return cells


def _write_tokenize(ws, tokenizer: Tokenizer, prompt: Prompt, fmt) -> None:
    """Values, not formulas: each word of the prompt, its bytes, every BPE merge with its rank, the ids."""
    from .tokenizer import _display_text

    def show(symbol: str) -> str:
        if symbol in tokenizer.special:
            return symbol
        return _display_text(bytes(tokenizer.byte_decoder[ch] for ch in symbol))

    box = fmt.wb.add_format({"border": 1, "align": "center", "bold": True, "bg_color": "#DDEBF7"})
    ws.set_column(0, 0, 18)
    ws.set_column(1, 1, 16)
    ws.set_column(2, 40, 9)
    ws.write_string(0, 0, "Tokenize: how the prompt became token ids", fmt.big)
    ws.write_string(
        1,
        0,
        "Byte-level BPE: each word is split into bytes, then the adjacent pair with the lowest rank in "
        "merges.txt is merged, again and again, until no pair of the word is in the list.",
        fmt.note,
    )
    ws.write_string(
        2,
        0,
        "Computed in Python when the book was built (sheetgpt tokenize shows the same); editing the "
        "Prompt tab does not change this tab.",
        fmt.note,
    )
    text = tokenizer.decode(prompt.ids[: prompt.n_prompt])
    row = 4
    for k, word in enumerate(tokenizer.trace(text)):
        ws.write_string(row, 0, f"word {k + 1}", fmt.title)
        ws.write_string(row, 1, _display_text(word.text.encode("utf-8")), fmt.token)
        row += 1
        ws.write_string(row, 0, "bytes", fmt.label)
        ws.write_row(row, 2, [show(s) for s in word.symbols], box)
        for step in word.steps:
            row += 1
            ws.write_string(row, 0, f"merge, rank {step.rank}", fmt.label)
            ws.write_string(row, 1, f"{show(step.pair[0])} + {show(step.pair[1])}", fmt.text)
            ws.write_row(row, 2, [show(s) for s in step.symbols], box)
        row += 1
        ws.write_string(row, 0, "token ids", fmt.title)
        ws.write_row(row, 2, word.ids, fmt.token)
        row += 2
    ws.freeze_panes(4, 0)


def _write_notes(sheets, layout: Layout) -> None:
    """A cell comment with the explanation on each region's title (the teaching tabs add their own)."""
    for tab in layout.compute_tabs():
        if tab.name in (layout.LENS, layout.EMBEDDINGS, layout.PROMPT):
            continue
        for region in tab.regions:
            if tab.name == layout.PREDICT:
                row = region.top if region.rows == 1 else region.top - 3
            else:
                row = region.top - region.header_rows - 2
            _note(sheets[tab.name], row, 0, region.text["explain"])


# ---------------------------------------------------------------- the typed prompt (bpe_sheet)

TYPED_CONTEXT = 16  # token rows of a typed-prompt book when --context is not given (or the prompt's length)


def plan_typed_prompt(
    text: str, tokenizer: Tokenizer, context: int | None, n_positions: int, wanted: bool | None
) -> tuple[bpe_sheet.TypedLimits | None, int | None]:
    """(limits, token rows) of a typed-prompt book, or (None, context) for a token-row book.

    ``wanted`` None: typed when the prompt fits the formulas (Latin-1 text, no <|endoftext|>).
    """
    if wanted is False or not text or not text.strip():
        return None, context
    n = len(tokenizer.encode(text))
    rows = context or min(max(n, TYPED_CONTEXT), n_positions)
    limits = bpe_sheet.default_limits(rows, len(tokenizer.merges), text)
    why = bpe_sheet.problem(text, tokenizer, limits, rows) if n <= rows else None
    if why is None and n > rows:
        return None, context  # make_prompt reports the prompt that is longer than the context
    if why is not None:
        if wanted:
            raise SheetGPTError(
                f"--typed-prompt: the BPE formulas cannot tokenize this prompt ({why}); use --no-typed-prompt"
            )
        return None, context
    return limits, rows


def _bpe_cached(layout: Layout, prompt: Prompt, trace: dict) -> dict:
    """Cached values of the BPE cells a viewer sees first (the rest are computed on recalculation)."""
    b = layout.bpe
    words = int(trace["bpe.word"].max())
    longest = max(len(w.encode("utf-8")) for w in bpe_sheet.PAT.findall(prompt.text))
    cached = {
        (b.TEXT, 1): prompt.text,
        (b.CHARS, 1): len(prompt.text),
        (b.WORDS, 1): words,
        (b.LONGEST, 1): longest,
        (b.OK, 1): 1,
        (b.STATUS, 1): _bpe_status(prompt),
    }
    for region in layout.tab(bpe_sheet.TAB).regions:
        for i in range(region.rows):
            cached[(region.top + i, region.left)] = float(trace[region.name][i, 0])
    return cached


def _formula_blocks(cells: dict[tuple[int, int], tuple[str, str, float | str]], fmt) -> list[fast_xlsx.FormulaBlock]:
    """Formulas {(row, col): (text, number format, cached value)} as fast_xlsx blocks: runs of
    consecutive rows in a column with one format, side by side runs of the same rows joined
    into rectangles. Number format "" means a formula that gives text (a str cached value).
    Every cell is checked to be its rectangle's first cell filled across (verify "all");
    where one is not, fast_xlsx cuts the rectangle into groups of one R1C1 form each."""
    runs: list[list] = []  # [col, first row, last row, number format]
    for r, c in sorted(cells, key=lambda rc: (rc[1], rc[0])):
        f = cells[(r, c)][1]
        last = runs[-1] if runs else None
        if last and last[0] == c and last[2] == r - 1 and last[3] == f:
            last[2] = r
        else:
            runs.append([c, r, r, f])
    rects: list[list] = []  # [first col, last col, first row, last row, number format]
    ending: dict[tuple, list] = {}  # (last col, first row, last row, format) -> its rect
    for c, r0, r1, f in runs:
        prev = ending.pop((c - 1, r0, r1, f), None)
        if prev is None:
            prev = [c, c, r0, r1, f]
            rects.append(prev)
        prev[1] = c
        ending[(c, r0, r1, f)] = prev
    blocks = []
    for c0, c1, r0, r1, f in rects:
        values = np.array(
            [[cells[(r, c)][2] for c in range(c0, c1 + 1)] for r in range(r0, r1 + 1)],
            dtype=np.float64 if f else object,
        )
        blocks.append(
            fast_xlsx.FormulaBlock(
                r0,
                c0,
                values,
                (fmt.number(f) if f else fmt.text)._get_xf_index(),
                [(0, r1 - r0 + 1, 0, c1 - c0 + 1)],
                lambda i, j, r0=r0, c0=c0: cells[(r0 + i, c0 + j)][0],
                verify="all",
            )
        )
    return blocks


def _bpe_status(prompt: Prompt) -> str:
    """The BPE tab's status message for the prompt the book was built with (its formula gives the same)."""
    n, words = prompt.n_prompt, len(bpe_sheet.PAT.findall(prompt.text))
    return (
        f"OK: {len(prompt.text)} characters, {words} words, {n} tokens; "
        f"the model predicts the token after position {n - 1}."
    )


def _write_bpe(sheets, layout: Layout, tokenizer: Tokenizer, prompt: Prompt, trace, fmt) -> None:
    """The BPE tab (every cell from bpe_sheet.BpeSheet), the merges tab and the bytes tab."""
    b = layout.bpe
    ws = sheets[bpe_sheet.TAB]
    cached = _bpe_cached(layout, prompt, trace)
    for t in range(layout.T):
        cached[(b.token_top + t, 3)] = tokenizer.token_str(prompt.ids[t])
        cached[(b.token_top + t, 4)] = prompt.texts[t]
    styles = {"label": fmt.label, "title": fmt.title, "note": fmt.note, "header": fmt.header}
    shared = getattr(ws, "shared", None)
    plain: dict[tuple[int, int], tuple[str, str, float | str]] = {}  # plain formulas, merged in as shared formulas
    for c in b.cells():
        if c.kind == "formula" and shared is not None:
            value = cached.get((c.row, c.col), 0 if c.fmt else "")
            plain[(c.row, c.col)] = (c.content, c.fmt, float(value) if c.fmt else str(value))
        elif c.kind in styles:
            ws.write_string(c.row, c.col, c.content, styles[c.kind])
        elif c.kind == "number":
            ws.write_number(c.row, c.col, c.content, fmt.label)
        elif c.kind == "slot":
            ws.write_number(c.row, c.col, c.content, fmt.header_number(c.fmt))
        else:  # a formula, on a sheet without shared formulas
            num = fmt.number(c.fmt) if c.fmt else fmt.text
            ws.write_formula(c.row, c.col, "=" + c.content, num, cached.get((c.row, c.col), 0 if c.fmt else ""))
    if plain:
        shared.extend(_formula_blocks(plain, fmt))
    ws.set_column(0, 0, 12)
    ws.set_column(1, 1, 12)
    ws.freeze_panes(0, 1)

    ws = sheets[bpe_sheet.MERGES]
    V = tokenizer.vocab_size
    for k, label in enumerate(
        ["rank", "left", "right", "left right", "left id", "right id", "merged id", f"key = left id x {V} + right id"]
    ):
        ws.write_string(0, k, label, fmt.header)
    enc = tokenizer.encoder
    for r, (a, c) in enumerate(tokenizer.merges, start=1):
        ws.write_number(r, 0, r - 1)
        ws.write_string(r, 1, a)
        ws.write_string(r, 2, c)
        ws.write_string(r, 3, f"{a} {c}")
        ws.write_number(r, 4, enc[a])
        ws.write_number(r, 5, enc[c])
        ws.write_number(r, 6, enc[a + c])
        ws.write_number(r, 7, enc[a] * V + enc[c])
    ws.set_column(1, 3, 12)
    ws.freeze_panes(1, 0)

    ws = sheets[bpe_sheet.BYTES]
    for k, label in enumerate(
        ["code point", "character", "class", "UTF-8 byte symbols", "class name", "byte", "GPT-2 symbol", "token id"]
    ):
        ws.write_string(0, k, label, fmt.header)
    table = bpe_sheet._byte_table()
    for code, ch, cls, symbols in bpe_sheet.char_table():
        r = code + 1
        ws.write_number(r, 0, code)
        if ch:
            ws.write_string(r, 1, ch)
            ws.write_string(r, 3, symbols)
        ws.write_number(r, 2, cls)
        ws.write_string(r, 4, bpe_sheet.CLASS_NAMES[cls])
        ws.write_number(r, 5, code)
        ws.write_string(r, 6, table[code])
        ws.write_number(r, 7, tokenizer.encoder[table[code]])
    ws.set_column(3, 6, 12)
    ws.freeze_panes(1, 0)


def _write_typed_prompt(ws, layout: Layout, prompt: Prompt, fmt) -> None:
    """Prompt tab of a typed-prompt book: the text in B4, token rows filled in by the BPE tab."""
    b = layout.bpe
    V = layout.config.vocab_size
    ws.set_column(0, 0, 8)
    ws.set_column(1, 1, 18)
    ws.set_column(2, 2, 10)
    ws.set_column(3, 3, 60)
    ws.write_string(0, 0, "Prompt: type any text into the yellow cell B4, then recalculate", fmt.big)
    ws.write_formula(1, 0, f"={bpe_sheet.TAB}!{bpe_sheet._a1(b.STATUS, 1, True, True)}", fmt.note, _bpe_status(prompt))
    ws.write_string(layout.PREDICT_AFTER[0], 0, "Predict the token after position", fmt.label)
    ws.write_formula(
        *layout.PREDICT_AFTER, f"=IF({b.ok_cell()}=1,{b.count_cell()}-1,#N/A)", fmt.token, prompt.predict_after
    )
    ws.write_string(3, 0, "Text:", fmt.label)
    ws.write_string(*layout.TYPED_TEXT, prompt.text, fmt.edit)
    head = PROMPT_TOP - 1
    for col, label in enumerate(["pos", "token", "token id", "note"]):
        ws.write_string(head, col, label, fmt.header)
    ws.write_string(
        head,
        4,
        "Column B shows the BPE tab's tokens of the text. You may type over one: column C "
        "looks up whatever column B holds in the vocab tab (exact match), so a typed token "
        "wins. Undo (or copy column B's formula from another row) to go back.",
        fmt.note,
    )
    vocab = quote(layout.VOCAB) + f"$B$1:$B${V}"
    _write_token_rows(
        ws,
        layout,
        prompt,
        fmt,
        lambda r, t: ws.write_formula(r, 1, f"=INDEX({vocab},{b.id_cell(t)}+1)", fmt.edit, prompt.texts[t]),
    )
