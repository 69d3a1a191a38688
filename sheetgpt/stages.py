"""The one definition of the workbook: every tab, every region, its shape and its formula.

The writer lays tabs out from this list, the checker reads regions from it and compares
each with the reference stage of the same name, and the Guide tab and docs describe it.
A region's name is the reference's stage name (``h.0.ln_1.mean``); its formula is written
here once.

Coordinates are 0-based (row, col) like xlsxwriter's; formulas use A1 references.
Every computation region has the same frame: a title row, an explanation row, a header
row, then one row per token with the position in column A and the token text in column B;
the numbers start in column C.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .checkpoint import param_shapes
from .config import GPT2Config

if TYPE_CHECKING:
    from .bpe_sheet import BpeSheet, TypedLimits

DATA_COL = 2  # column C: first column of numbers in every computation region
FRAME_ROWS = 3  # title, explanation, column headers
PROMPT_TOP = 5  # Prompt tab: first token row (0-based row 5 = sheet row 6)

# Tab kinds, each drawn in its own colour.
INPUT, COMPUTE, OUTPUT, WEIGHTS, GUIDE = "input", "compute", "output", "weights", "guide"


def quote(sheet: str) -> str:
    """A sheet name as it appears in a formula: 'Block 0'!, wte!"""
    if sheet.replace("_", "").isalnum() and not sheet[0].isdigit():
        return f"{sheet}!"
    return "'" + sheet.replace("'", "''") + "'!"


def cell(row: int, col: int, row_abs: bool = False, col_abs: bool = False) -> str:
    return xl_rowcol_to_cell(row, col, row_abs, col_abs)


def rng(r0: int, c0: int, r1: int, c1: int, row_abs=(True, True), col_abs=(True, True)) -> str:
    """A1 range from (r0, c0) to (r1, c1) inclusive; absoluteness per end."""
    return f"{cell(r0, c0, row_abs[0], col_abs[0])}:{cell(r1, c1, row_abs[1], col_abs[1])}"


@dataclass
class Region:
    """A rectangle of cells on a tab that holds one stage of the forward pass.

    ``formula(i, j)`` gives the text of a per-cell formula (without '=') for data row i and
    column j of the region (j counts gap columns of head regions too); or ``arrays``
    lists CSE array formulas as (r0, c0, r1, c1, text) in sheet coordinates. ``heads``
    > 0 means the region holds ``heads`` matrices side by side, each ``block_cols`` wide
    with one empty column between them.
    """

    name: str  # the reference stage name
    tab: str
    top: int  # first data row
    rows: int
    cols: int
    left: int = DATA_COL
    formula: Callable[[int, int], str] | None = None
    array_fn: Callable[[], list[tuple[int, int, int, int, str]]] | None = None
    heads: int = 0
    block_cols: int = 0
    col_header: Callable[[int], object] | None = None  # header row value for data column j
    header_rows: int = 1
    number_format: str = "0.0000"
    text: dict = field(default_factory=dict)  # title / explain, from templates
    step: str = ""

    @property
    def arrays(self) -> list[tuple[int, int, int, int, str]]:
        """CSE array formulas as (r0, c0, r1, c1, text), in sheet coordinates, once placed."""
        return self.array_fn() if self.array_fn else []

    @property
    def width(self) -> int:
        """Columns the region spans on the sheet (gaps between heads included)."""
        return self.heads * (self.block_cols + 1) - 1 if self.heads else self.cols

    @property
    def bottom(self) -> int:
        return self.top + self.rows - 1

    @property
    def right(self) -> int:
        return self.left + self.width - 1

    def ref(self, from_tab: str) -> str:
        """Sheet prefix needed to refer to this region from another tab."""
        return "" if from_tab == self.tab else quote(self.tab)

    def row(self, i: int, from_tab: str, j0: int = 0, j1: int | None = None) -> str:
        """Row i of the data (columns j0..j1), columns absolute, row relative: $C5:$AN5."""
        j1 = self.cols - 1 if j1 is None else j1
        return self.ref(from_tab) + rng(
            self.top + i, self.left + j0, self.top + i, self.left + j1, (False, False), (True, True)
        )

    def at(self, i: int, j: int, from_tab: str, row_abs=False, col_abs=False) -> str:
        return self.ref(from_tab) + cell(self.top + i, self.left + j, row_abs, col_abs)

    def block(self, from_tab: str, i0=0, i1=None, j0=0, j1=None) -> str:
        """An absolute rectangle of the data: $C$5:$AN$20."""
        i1 = self.rows - 1 if i1 is None else i1
        j1 = self.cols - 1 if j1 is None else j1
        return self.ref(from_tab) + rng(self.top + i0, self.left + j0, self.top + i1, self.left + j1)

    def head_left(self, h: int) -> int:
        return self.left + h * (self.block_cols + 1)

    def grid(self, value: np.ndarray) -> np.ndarray:
        """Lay a reference value out as the sheet shows it: [rows, width], NaN in gaps."""
        value = np.asarray(value, dtype=np.float64)
        if not self.heads:
            return value.reshape(self.rows, self.cols)
        out = np.full((self.rows, self.width), np.nan)
        for h in range(self.heads):
            out[:, h * (self.block_cols + 1) : h * (self.block_cols + 1) + self.block_cols] = value[h]
        return out

    def columns(self) -> list[int]:
        """Data columns j (0-based within the region) that hold cells: gaps between heads skipped."""
        if not self.heads:
            return list(range(self.cols))
        return [j for j in range(self.width) if j % (self.block_cols + 1) != self.block_cols]


@dataclass
class Tab:
    name: str
    kind: str
    regions: list[Region] = field(default_factory=list)
    shape: tuple[int, int] | None = None  # weight tabs: the parameter's (rows, cols)
    title: str = ""


def load_texts() -> configparser.ConfigParser:
    here = Path(__file__).parent / "templates" / "regions.ini"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(here, encoding="utf-8")
    return parser


def weight_tab_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """Vectors are one row; matrices keep GPT-2's [in, out] layout."""
    return (1, shape[0]) if len(shape) == 1 else shape


@dataclass
class Layout:
    """Where everything is, for a model config, T token rows and the logits mode."""

    config: GPT2Config
    T: int
    logits_all: bool = False
    typed: TypedLimits | None = None  # a typed-prompt book: the BPE tab's limits (bpe_sheet)

    # ---- tab names -------------------------------------------------------------------
    GUIDE = "Guide"
    PROMPT = "Prompt"
    EMBED = "Embed"
    FINAL = "Final norm"
    LOGITS = "Logits"
    PREDICT = "Predict"
    VOCAB = "vocab"
    TOKENIZE = "Tokenize"
    LENS = "Logit lens"
    EMBEDDINGS = "Embeddings"

    @staticmethod
    def block_tab(i: int) -> str:
        return f"Block {i}"

    # ---- the Prompt tab ----------------------------------------------------------------
    # Column A position, B token text (editable), C token id, D note. Guide-like cells above.
    PROMPT_TEXT_COL = 1
    PROMPT_ID_COL = 2
    PROMPT_NOTE_COL = 3
    PREDICT_AFTER = (2, 2)  # Prompt!C3: the position whose next token is predicted

    @property
    def predict_after_cell(self) -> str:
        return quote(self.PROMPT) + cell(*self.PREDICT_AFTER, True, True)

    def prompt_text(self, t: int, from_tab: str, abs_row=False) -> str:
        return quote(self.PROMPT) + cell(PROMPT_TOP + t, self.PROMPT_TEXT_COL, abs_row, True)

    def prompt_id(self, t: int, from_tab: str) -> str:
        return quote(self.PROMPT) + cell(PROMPT_TOP + t, self.PROMPT_ID_COL, False, True)

    # ---- Predict tab cells ---------------------------------------------------------------
    TEMPERATURE = (2, 2)  # Predict!C3
    TOP_K = 10

    # ---- the stage list ------------------------------------------------------------------
    @cached_property
    def texts(self) -> configparser.ConfigParser:
        return load_texts()

    @cached_property
    def tabs(self) -> list[Tab]:
        c = self.config
        tabs = [
            Tab(self.GUIDE, GUIDE),
            Tab(self.PROMPT, INPUT, [self._prompt_region()]),
            Tab(self.TOKENIZE, INPUT),
            self._embed_tab(),
        ]
        x = tabs[-1].regions[-1]  # the residual stream so far
        for i in range(c.n_layer):
            tab = self._block_tab(i, x)
            tabs.append(tab)
            x = tab.regions[-1]
        final = self._final_tab(x)
        tabs += [final, self._logits_tab(final), self._predict_tab()]
        tabs += [
            self._lens_tab(final, [t.regions[-1] for t in tabs if t.name.startswith("Block ")]),
            self._embeddings_tab(),
        ]
        tabs.append(Tab(self.VOCAB, INPUT, shape=(c.vocab_size, 3)))
        for name, shape in param_shapes(c).items():
            tabs.append(Tab(name, WEIGHTS, shape=weight_tab_shape(shape)))
        if self.typed:
            self._add_typed_prompt_tabs(tabs)
        self._number_steps(tabs)
        return tabs

    @cached_property
    def regions(self) -> dict[str, Region]:
        return {r.name: r for tab in self.tabs for r in tab.regions}

    def tab(self, name: str) -> Tab:
        return next(t for t in self.tabs if t.name == name)

    def weight(self, name: str, from_tab: str = "") -> str:
        """The whole weight tab as an absolute range: 'h.0.attn.c_attn.w'!$A$1:$DL$40."""
        rows, cols = weight_tab_shape(param_shapes(self.config)[name])
        return quote(name) + rng(0, 0, rows - 1, cols - 1)

    def _number_steps(self, tabs: list[Tab]) -> None:
        fill = dict(
            d=self.config.n_embd,
            d3=3 * self.config.n_embd,
            d4=4 * self.config.n_embd,
            T=self.T,
            H=self.config.n_head,
            hd=self.config.head_dim,
            V=self.config.vocab_size,
            eps=f"{self.config.layer_norm_epsilon:g}",
        )
        for tab in tabs:
            for k, region in enumerate(tab.regions, start=1):
                key = region.name.split(".", 2)[2] if region.name.startswith("h.") else region.name
                section = self.texts[key] if self.texts.has_section(key) else {}
                region.text = {f: section.get(f, "").format(**fill, block=tab.name) for f in ("title", "explain")}
                region.step = f"{tab.name} · step {k}" if tab.kind == COMPUTE else tab.name

    # Each region is placed below the previous one: FRAME_ROWS header rows, data, a blank row.
    @staticmethod
    def _stack(regions: list[Region], first_top: int = FRAME_ROWS + 1) -> None:
        top = first_top
        for region in regions:
            region.top = top + region.header_rows - 1
            top = region.bottom + 1 + FRAME_ROWS + 1

    def _prompt_region(self) -> Region:
        V = self.config.vocab_size
        vocab = quote(self.VOCAB) + rng(0, 1, V - 1, 1)

        def formula(i, j):
            text = cell(PROMPT_TOP + i, self.PROMPT_TEXT_COL, False, True)
            return f"IFERROR(MATCH(TRUE,EXACT({vocab},{text}),0)-1,-1)"

        region = Region("prompt.ids", self.PROMPT, PROMPT_TOP, self.T, 1, left=self.PROMPT_ID_COL, number_format="0")
        region.array_fn = lambda: [
            (PROMPT_TOP + i, self.PROMPT_ID_COL, PROMPT_TOP + i, self.PROMPT_ID_COL, formula(i, 0))
            for i in range(self.T)
        ]
        return region

    def _embed_tab(self) -> Tab:
        c, tab = self.config, self.EMBED
        V, P, d = c.vocab_size, c.n_positions, c.n_embd
        wte = Region("embed.wte", tab, 0, self.T, d)
        wpe = Region("embed.wpe", tab, 0, self.T, d)
        h = Region("embed.h", tab, 0, self.T, d)
        self._stack([wte, wpe, h])

        def col(name, rows, j):  # one column of a weight tab, rows absolute: wte!B$1:B$300
            return quote(name) + rng(0, j, rows - 1, j, (True, True), (False, False))

        wte.formula = lambda i, j: f"INDEX({col('wte', V, j)},MAX({self.prompt_id(i, tab)},0)+1)"
        wpe.formula = lambda i, j: f"INDEX({col('wpe', P, j)},$A{wpe.top + i + 1}+1)"
        h.formula = lambda i, j: f"{wte.at(i, j, tab)}+{wpe.at(i, j, tab)}"
        return Tab(tab, COMPUTE, [wte, wpe, h])

    def _layer_norm(self, tab: str, name: str, x: Region, params: str | None = None) -> list[Region]:
        """mean, variance, normalized, scale/shift of each row of x, with the g and b of ``params`` (default: name)."""
        d, eps, rows = self.config.n_embd, self.config.layer_norm_epsilon, x.rows
        mean = Region(f"{name}.mean", tab, 0, rows, 1)
        var = Region(f"{name}.var", tab, 0, rows, 1, number_format="0.000000")
        norm = Region(f"{name}.norm", tab, 0, rows, d)
        out = Region(f"{name}.out", tab, 0, rows, d)
        mean.formula = lambda i, j: f"AVERAGE({x.row(i, tab)})"
        var.formula = lambda i, j: f"_xlfn.VAR.P({x.row(i, tab)})"
        norm.formula = lambda i, j: (
            f"({x.at(i, j, tab)}-{mean.at(i, 0, tab, col_abs=True)})/SQRT({var.at(i, 0, tab, col_abs=True)}+{eps:G})"
        )
        g, b = quote(f"{params or name}.g"), quote(f"{params or name}.b")  # one-row weight tabs: column j, row 1
        out.formula = lambda i, j: f"{norm.at(i, j, tab)}*{g}{xl_col_to_name(j)}$1+{b}{xl_col_to_name(j)}$1"
        return [mean, var, norm, out]

    def _linear(self, tab: str, name: str, x: Region, n_out: int) -> Region:
        """CSE: {=MMULT(x, w) + b} over the whole [T, n_out] rectangle."""
        out = Region(name, tab, 0, self.T, n_out)
        w, b = self.weight(name + ".w"), self.weight(name + ".b")
        out.array_fn = lambda: [(out.top, out.left, out.bottom, out.right, f"MMULT({x.block(tab)},{w})+{b}")]
        return out

    def _block_tab(self, i: int, x: Region) -> Tab:
        c, tab, T = self.config, self.block_tab(i), self.T
        d, H, hd = c.n_embd, c.n_head, c.head_dim
        p = f"h.{i}"
        ln_1 = self._layer_norm(tab, f"{p}.ln_1", x)
        qkv = self._linear(tab, f"{p}.attn.c_attn", ln_1[-1], 3 * d)
        heads = dict(heads=H, block_cols=T, header_rows=3)  # head number, key token, key position
        scores = Region(f"{p}.attn.scores", tab, 0, T, T, **heads)
        masked = Region(f"{p}.attn.masked", tab, 0, T, T, **heads)
        exp = Region(f"{p}.attn.exp", tab, 0, T, T, **heads)
        weights = Region(f"{p}.attn.weights", tab, 0, T, T, **heads)
        merged = Region(f"{p}.attn.merged", tab, 0, T, d)
        proj = self._linear(tab, f"{p}.attn.c_proj", merged, d)
        res_1 = Region(f"{p}.res_1", tab, 0, T, d)
        ln_2 = self._layer_norm(tab, f"{p}.ln_2", res_1)
        fc = self._linear(tab, f"{p}.mlp.c_fc", ln_2[-1], 4 * d)
        gelu = Region(f"{p}.mlp.gelu", tab, 0, T, 4 * d)
        mlp_proj = self._linear(tab, f"{p}.mlp.c_proj", gelu, d)
        res_2 = Region(f"{p}.res_2", tab, 0, T, d)
        regions = [*ln_1, qkv, scores, masked, exp, weights, merged, proj, res_1, *ln_2, fc, gelu, mlp_proj, res_2]
        self._stack(regions)

        def head_cols(region: Region, h: int, i: int) -> str:  # row i of head h's block: $C5:$R5
            c0 = region.head_left(h)
            return rng(region.top + i, c0, region.top + i, c0 + region.block_cols - 1, (False, False), (True, True))

        def qkv_block(which: int, h: int) -> str:  # q (0), k (1) or v (2) of head h: [T, hd]
            return qkv.block(tab, j0=which * d + h * hd, j1=which * d + (h + 1) * hd - 1)

        # Each head is its own CSE array: {=MMULT(q_h, TRANSPOSE(k_h))/SQRT(hd)}
        scores.array_fn = lambda: [
            (
                scores.top,
                scores.head_left(h),
                scores.bottom,
                scores.head_left(h) + T - 1,
                f"MMULT({qkv_block(0, h)},TRANSPOSE({qkv_block(1, h)}))/SQRT({hd})",
            )
            for h in range(H)
        ]
        key_pos = masked.top - 1  # header row of key positions
        col = lambda j: DATA_COL + j  # noqa: E731  all head regions share the same columns
        masked.formula = lambda i, j: (
            f'IF({cell(key_pos, col(j), True)}>$A{masked.top + i + 1},"",{cell(scores.top + i, col(j))})'
        )
        exp.formula = lambda i, j: (
            f"IF(ISNUMBER({cell(masked.top + i, col(j))}),"
            f"EXP({cell(masked.top + i, col(j))}-MAX({head_cols(masked, j // (T + 1), i)})),0)"
        )
        weights.formula = lambda i, j: f"{cell(exp.top + i, col(j))}/SUM({head_cols(exp, j // (T + 1), i)})"
        merged.array_fn = lambda: [
            (
                merged.top,
                merged.left + h * hd,
                merged.bottom,
                merged.left + (h + 1) * hd - 1,
                f"MMULT({weights.block(tab, j0=h * (T + 1), j1=h * (T + 1) + T - 1)},{qkv_block(2, h)})",
            )
            for h in range(H)
        ]
        res_1.formula = lambda i, j: f"{x.at(i, j, tab)}+{proj.at(i, j, tab)}"
        gelu.formula = lambda i, j: (
            f"0.5*{cell(fc.top + i, fc.left + j)}*(1+TANH(SQRT(2/PI())*"
            f"({cell(fc.top + i, fc.left + j)}+0.044715*{cell(fc.top + i, fc.left + j)}^3)))"
        )
        res_2.formula = lambda i, j: f"{res_1.at(i, j, tab)}+{mlp_proj.at(i, j, tab)}"
        return Tab(tab, COMPUTE, regions)

    def _final_tab(self, x: Region) -> Tab:
        tab, T = self.FINAL, self.T
        ln_f = self._layer_norm(tab, "ln_f", x)
        select = Region("ln_f.select", tab, 0, 1, T, number_format="0")
        last = Region("ln_f.last", tab, 0, 1, self.config.n_embd)
        self._stack([*ln_f, select, last])
        select.formula = lambda i, j: f"IF({cell(select.top - 1, select.left + j, True)}={self.predict_after_cell},1,0)"
        last.array_fn = lambda: [
            (last.top, last.left, last.top, last.right, f"MMULT({select.block(tab)},{ln_f[-1].block(tab)})")
        ]
        return Tab(tab, COMPUTE, [*ln_f, select, last])

    def _logits_tab(self, final: Tab) -> Tab:
        """Vocabulary down the rows: {=MMULT(wte, TRANSPOSE(h))}, h the predicting row(s)."""
        tab, V, wte = self.LOGITS, self.config.vocab_size, self.weight("wte")
        ln_f = {r.name: r for r in final.regions}

        def unembed(region: Region, h: Region) -> Region:
            region.array_fn = lambda: [
                (region.top, region.left, region.bottom, region.right, f"MMULT({wte},TRANSPOSE({h.block(tab)}))")
            ]
            return region

        regions = [unembed(Region("logits", tab, FRAME_ROWS + 1, V, 1, number_format="0.000"), ln_f["ln_f.last"])]
        if self.logits_all:
            every = Region("logits.all", tab, FRAME_ROWS + 1, V, self.T, left=DATA_COL + 2, number_format="0.000")
            regions.append(unembed(every, ln_f["ln_f.out"]))
        return Tab(tab, OUTPUT, regions)

    def _predict_tab(self) -> Tab:
        tab, V = self.PREDICT, self.config.vocab_size
        logits = quote(self.LOGITS) + rng(FRAME_ROWS + 1, DATA_COL, FRAME_ROWS + V, DATA_COL)
        temp = cell(*self.TEMPERATURE, True, True)
        top = Region("predict.max", tab, 3, 1, 1, number_format="0.0000")
        total = Region("predict.sum", tab, 4, 1, 1, number_format="0.0000")
        probs = Region("predict.probs", tab, 8, V, 1, number_format="0.000000")
        top.formula = lambda i, j: f"MAX({logits})"
        total.formula = lambda i, j: f"SUMPRODUCT(EXP(({logits}-{cell(top.top, top.left, True, True)})/{temp}))"
        probs.formula = lambda i, j: (
            f"EXP(({quote(self.LOGITS)}{cell(FRAME_ROWS + 1 + i, DATA_COL)}-{cell(top.top, top.left, True, True)})/{temp})"
            f"/{cell(total.top, total.left, True, True)}"
        )
        return Tab(tab, OUTPUT, [top, total, probs])

    # ---- Logit lens: what the model would predict if it stopped after block i -----------------
    def lens_first_top(self) -> int:
        """First data row of the Logit lens tab's first region, below the summary table (one row per block)."""
        return self.LENS_SUMMARY_TOP + self.config.n_layer + 1 + FRAME_ROWS + 1

    LENS_SUMMARY_TOP = 4  # Logit lens tab: first row of the summary table (block, top token, probability)

    def _lens_tab(self, final: Tab, outputs: list[Region]) -> Tab:
        """One row per block: the predicting position's residual after block i, ln_f, logits, top token."""
        c, tab, L = self.config, self.LENS, self.config.n_layer
        V = c.vocab_size
        select = next(r for r in final.regions if r.name == "ln_f.select")
        x = Region("lens.x", tab, 0, L, c.n_embd)
        ln = self._layer_norm(tab, "lens", x, params="ln_f")
        logits = Region("lens.logits", tab, 0, V, L, number_format="0.000")
        top = Region("lens.max", tab, 0, L, 1)
        total = Region("lens.sum", tab, 0, L, 1)
        prob = Region("lens.prob", tab, 0, L, 1, number_format="0.00%")
        ids = Region("lens.id", tab, 0, L, 1, number_format="0")
        regions = [x, *ln, top, total, prob, ids, logits]
        self._stack(regions, self.lens_first_top())
        # Row i: {=MMULT(ln_f.select, block i's output)}: the one-hot row picks the predicting position.
        x.array_fn = lambda: [
            (x.top + i, x.left, x.top + i, x.right, f"MMULT({select.block(tab)},{outputs[i].block(tab)})")
            for i in range(L)
        ]
        logits.array_fn = lambda: [
            (
                logits.top,
                logits.left,
                logits.bottom,
                logits.right,
                f"MMULT({self.weight('wte')},TRANSPOSE({ln[-1].block(tab)}))",
            )
        ]
        column = lambda i: logits.block(tab, j0=i, j1=i)  # noqa: E731  block i's logits, all V rows
        top.formula = lambda i, j: f"MAX({column(i)})"
        total.formula = lambda i, j: f"SUMPRODUCT(EXP({column(i)}-{top.at(i, 0, tab, col_abs=True)}))"
        prob.formula = lambda i, j: f"1/{total.at(i, 0, tab, col_abs=True)}"
        ids.formula = lambda i, j: f"MATCH({top.at(i, 0, tab, col_abs=True)},{column(i)},0)-1"
        return Tab(tab, OUTPUT, regions)

    # ---- Embeddings: cosine similarity of token vectors ----------------------------------------
    EMB_TOP = 5  # Embeddings tab: first row of the editable tokens
    EMB_TEXT_COL, EMB_ID_COL, EMB_LEN_COL, EMB_VEC_COL = 1, 2, 3, 4
    EMB_PAIRS = 4
    EMB_NEAREST = 10

    @property
    def emb_roles(self) -> list[str]:
        """The label of each editable token row of the Embeddings tab, in order."""
        pairs = [f"pair {k + 1}: {ab}" for k in range(self.EMB_PAIRS) for ab in "ab"]
        return pairs + ["nearest to", "analogy: a", "analogy: minus b", "analogy: plus c"]

    @property
    def emb_query(self) -> int:
        return 2 * self.EMB_PAIRS  # row (within the token rows) of the "nearest to" token

    def emb_input_cells(self) -> list[tuple[int, int]]:
        """(row, col) of every editable token text on the Embeddings tab."""
        return [(self.EMB_TOP + k, self.EMB_TEXT_COL) for k in range(len(self.emb_roles))]

    def _embeddings_tab(self) -> Tab:
        c, tab = self.config, self.EMBEDDINGS
        V, d, N = c.vocab_size, c.n_embd, len(self.emb_roles)
        top = self.EMB_TOP
        vocab = quote(self.VOCAB) + rng(0, 1, V - 1, 1)
        ids = Region("emb.ids", tab, top, N, 1, left=self.EMB_ID_COL, number_format="0")
        vectors = Region("emb.vectors", tab, top, N, d, left=self.EMB_VEC_COL)
        analogy = Region("emb.analogy", tab, top + N, 1, d, left=self.EMB_VEC_COL)
        lengths = Region("emb.lengths", tab, top, N + 1, 1, left=self.EMB_LEN_COL)
        pairs = Region("emb.pairs", tab, 0, self.EMB_PAIRS, 1, left=3, number_format="0.000")
        k = self.EMB_NEAREST
        near_q = Region("emb.near.query", tab, 0, k, 1, left=3, number_format="0.000")
        near_q_id = Region("emb.near.query.id", tab, 0, k, 1, left=2, number_format="0")
        near_a = Region("emb.near.analogy", tab, 0, k, 1, left=9, number_format="0.000")
        near_a_id = Region("emb.near.analogy.id", tab, 0, k, 1, left=8, number_format="0")
        norms = Region("emb.norms", tab, 0, V, 1, left=2, number_format="0.000")
        cos = Region("emb.cos", tab, 0, V, 2, left=3, number_format="0.000")
        self._stack([pairs, near_q, norms], top + N + 1 + FRAME_ROWS + 1)
        for twin, of in ((near_q_id, near_q), (near_a, near_q), (near_a_id, near_q), (cos, norms)):
            twin.top = of.top
        wte = self.weight("wte")

        def text(k):
            return cell(top + k, self.EMB_TEXT_COL, False, True)

        ids.array_fn = lambda: [
            (top + k, ids.left, top + k, ids.left, f"IFERROR(MATCH(TRUE,EXACT({vocab},{text(k)}),0)-1,-1)")
            for k in range(N)
        ]

        def wte_col(j):  # one column of wte, rows absolute: wte!B$1:B$300
            return quote("wte") + rng(0, j, V - 1, j, (True, True), (False, False))

        vectors.formula = lambda i, j: f"INDEX({wte_col(j)},MAX({ids.at(i, 0, tab, col_abs=True)},0)+1)"
        a, b, cc = (vectors.top + N - 3 + n for n in range(3))  # rows of the analogy's a, b, c
        analogy.formula = lambda i, j: (
            f"{cell(a, vectors.left + j)}-{cell(b, vectors.left + j)}+{cell(cc, vectors.left + j)}"
        )
        # The analogy row sits right below the token rows, in the same columns: row N of `vectors`.
        lengths.formula = lambda i, j: f"SQRT(SUMPRODUCT({vectors.row(i, tab)},{vectors.row(i, tab)}))"
        pairs.formula = lambda i, j: (
            f"SUMPRODUCT({vectors.row(2 * i, tab)},{vectors.row(2 * i + 1, tab)})"
            f"/({lengths.at(2 * i, 0, tab, True, True)}*{lengths.at(2 * i + 1, 0, tab, True, True)})"
        )
        # Every vocabulary row's length, then cosine with the query token and with the analogy vector:
        # {=MMULT(wte, TRANSPOSE(v)) / (lengths * |v|)}, one CSE array per column.
        wte_row = lambda i: quote("wte") + rng(i, 0, i, d - 1, (False, False))  # noqa: E731
        norms.formula = lambda i, j: f"SQRT(SUMPRODUCT({wte_row(i)},{wte_row(i)}))"

        def cosine(j, row):
            v = rng(row, vectors.left, row, vectors.right)
            return (
                cos.top,
                cos.left + j,
                cos.bottom,
                cos.left + j,
                f"MMULT({wte},TRANSPOSE({v}))/({norms.block(tab)}*{cell(row, lengths.left, True, True)})",
            )

        cos.array_fn = lambda: [cosine(0, top + self.emb_query), cosine(1, analogy.top)]

        def nearest(region, id_region, j):
            column = cos.block(tab, j0=j, j1=j)
            region.formula = lambda i, _: f"LARGE({column},{i + 1})"
            id_region.formula = lambda i, _: f"MATCH({region.at(i, 0, tab)},{column},0)-1"

        nearest(near_q, near_q_id, 0)
        nearest(near_a, near_a_id, 1)
        regions = [ids, vectors, analogy, lengths, pairs, near_q, near_q_id, near_a, near_a_id, norms, cos]
        return Tab(tab, COMPUTE, regions)

    def compute_tabs(self) -> list[Tab]:
        return [t for t in self.tabs if t.regions]

    def weight_tabs(self) -> list[Tab]:
        return [t for t in self.tabs if t.kind == WEIGHTS]

    # ---- the typed prompt: GPT-2's tokenizer in formulas (bpe_sheet) ----------------------------
    TYPED_TEXT = (3, 1)  # Prompt!B4: the text a learner types, in typed-prompt books

    @cached_property
    def bpe(self) -> BpeSheet | None:
        from .bpe_sheet import BpeSheet

        if not self.typed:
            return None
        return BpeSheet(self.typed, self.T, self.config.vocab_size, self.typed.n_merges, self.PROMPT, self.VOCAB)

    def _add_typed_prompt_tabs(self, tabs: list[Tab]) -> None:
        """BPE after the Prompt tab (and its neighbours of kind input), merges and bytes after vocab."""
        from .bpe_sheet import BYTES, MERGES, TAB

        b = self.bpe
        regions = [
            Region("bpe.class", TAB, b.CHAR_TOP, b.N, 1, left=b.CLS, number_format="0"),
            Region("bpe.word", TAB, b.CHAR_TOP, b.N, 1, left=b.WORD, number_format="0"),
            Region("bpe.count", TAB, b.COUNT, 1, 1, left=1, number_format="0"),
            Region("bpe.ids", TAB, b.token_top, self.T, 1, left=2, number_format="0"),
        ]
        k = next(i for i, t in enumerate(tabs) if t.name == self.PROMPT) + 1
        while tabs[k].kind == INPUT and not tabs[k].regions:
            k += 1
        tabs.insert(k, Tab(TAB, INPUT, regions))
        k = next(i for i, t in enumerate(tabs) if t.name == self.VOCAB) + 1
        tabs[k:k] = [Tab(MERGES, INPUT, shape=(self.typed.n_merges, 8)), Tab(BYTES, INPUT, shape=(257, 8))]
