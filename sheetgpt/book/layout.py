"""Where everything is: tabs, and the regions on them that hold the stages of the forward pass.

The tabs, in the order the book shows them, are listed in ``sheetgpt.book.tabs.TABS``: one
module per tab, which places its regions (``tabs(layout, placed)``), writes its frame
(``write``) and reads back what ``sheetgpt check`` needs from it. A region's name is the
reference's stage name (``h.0.ln_1.mean``); its formula is written there, once.

Coordinates are 0-based (row, col) like xlsxwriter's; formulas use A1 references
(``sheetgpt.a1``). Every computation region has the same frame: a title row, an explanation
row, a header row, then one row per token with the position in column A and the token text
in column B; the numbers start in column C.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType

import numpy as np

from .. import a1
from ..checkpoint import param_shapes
from ..config import GPT2Config
from ..prompt import TypedLimits

DATA_COL = 2  # column C: first column of numbers in every computation region
FRAME_ROWS = 3  # title, explanation, column headers

# Tab kinds, each drawn in its own colour.
INPUT, COMPUTE, OUTPUT, WEIGHTS, GUIDE = "input", "compute", "output", "weights", "guide"


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
    col_header: Callable[[int], object] | None = None  # header row value for data column j (default: j)
    header_rows: int = 1
    number_format: str = "0.0000"
    heatmap: bool = False  # a colour scale from 0 to 1 over each head's matrix (attention weights)
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

    # ---- the frame above the data: title, explanation, header row(s) ----------------------
    @property
    def title_row(self) -> int:
        return self.top - self.header_rows - 2

    @property
    def explain_row(self) -> int:
        return self.title_row + 1

    @property
    def header_row(self) -> int:
        """The (last) header row, right above the data."""
        return self.top - 1

    # ---- references to the region's cells ----------------------------------------------------
    def ref(self, from_tab: str) -> str:
        """Sheet prefix needed to refer to this region from another tab."""
        return "" if from_tab == self.tab else a1.sheet_prefix(self.tab)

    def row(self, i: int, from_tab: str, j0: int = 0, j1: int | None = None) -> str:
        """Row i of the data (columns j0..j1), columns absolute, row relative: $C5:$AN5."""
        j1 = self.cols - 1 if j1 is None else j1
        return self.ref(from_tab) + a1.span(
            self.top + i, self.left + j0, self.top + i, self.left + j1, (False, False), (True, True)
        )

    def at(self, i: int, j: int, from_tab: str, row_abs=False, col_abs=False) -> str:
        return self.ref(from_tab) + a1.cell(self.top + i, self.left + j, row_abs, col_abs)

    def block(self, from_tab: str, i0=0, i1=None, j0=0, j1=None) -> str:
        """An absolute rectangle of the data: $C$5:$AN$20."""
        i1 = self.rows - 1 if i1 is None else i1
        j1 = self.cols - 1 if j1 is None else j1
        return self.ref(from_tab) + a1.span(self.top + i0, self.left + j0, self.top + i1, self.left + j1)

    @property
    def absolute(self) -> str:
        """The whole region, absolute, without a sheet: $C$5:$AN$20 (its defined name's range)."""
        return a1.span(self.top, self.left, self.bottom, self.right)

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


def stack(regions: list[Region], first_top: int = FRAME_ROWS + 1) -> None:
    """Place regions one below the other: each one's frame rows, its data, a blank row."""
    top = first_top
    for region in regions:
        region.top = top + region.header_rows - 1
        top = region.bottom + 1 + FRAME_ROWS + 1


@dataclass
class Tab:
    name: str
    kind: str
    regions: list[Region] = field(default_factory=list)
    shape: tuple[int, int] | None = None  # weight tabs: the parameter's (rows, cols)
    module: ModuleType | None = None  # the tab's module in sheetgpt.book.tabs (set by Layout)


def load_texts() -> configparser.ConfigParser:
    here = Path(__file__).parent.parent / "templates" / "regions.ini"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(here, encoding="utf-8")
    return parser


def weight_tab_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """Vectors are one row; matrices keep GPT-2's [in, out] layout."""
    return (1, shape[0]) if len(shape) == 1 else shape


def weight_range(config: GPT2Config, name: str) -> str:
    """A whole weight tab as an absolute range: 'h.0.attn.c_attn.w'!$A$1:$DL$40."""
    rows, cols = weight_tab_shape(param_shapes(config)[name])
    return a1.sheet_prefix(name) + a1.span(0, 0, rows - 1, cols - 1)


@dataclass(frozen=True)
class Switch:
    """A tab (or tabs) a book has or not by one on/off option. Its module declares ``SWITCH``; the command
    line's ``--NAME/--no-NAME`` flag, ``build_workbook``'s ``tabs`` argument and the Guide's
    configuration row (``label``, 1 when on, read back by ``sheetgpt check``) all come from it."""

    name: str  # the flag and the key in BookOptions.switches
    label: str  # the Guide's configuration row
    default: bool  # on in every book unless --no-NAME
    help: str  # the flag's help
    # The book predicts once from its prompt's token rows: refused with --generate or --steer, and its
    # prompt is token rows unless --typed-prompt (a training book: its loss is the prompt's prediction).
    fixed_rows: bool = False


@dataclass(frozen=True)
class BookOptions:
    """What a book holds besides its model: the one object the writer builds from the command line
    and the checker reads back from the Guide's configuration table; ``Layout`` is built from it."""

    context: int  # token rows
    logits_all: bool = False  # logits for every position (always in a generating book)
    typed: TypedLimits | None = None  # a typed-prompt book: the BPE tab's sizes
    # A generating book (``sheetgpt build --generate N``, N > 0): each row after the prompt holds the
    # argmax of the row before's logits, so every product is laid out a row at a time (no formula of
    # row t reads a later row) and the logits are computed for every row.
    generate: int = 0
    steer: bool = False  # the Steering tab (whose vector each block adds at its input, h.{i}.in) and the Neurons tab
    # The Features tab and the SAE's weight tabs (--features, --sae DIR): (the block whose input the
    # SAE reads, the number of features the book holds); None: no SAE.
    sae: tuple[int, int] | None = None
    switches: frozenset[str] = frozenset()  # the switched tabs the book has, by Switch.name (Saliency, Train)


@dataclass
class Layout:
    """Where everything is, for a model config and the book's options; ``modules`` are the tab modules
    in book order (``sheetgpt.book.tabs.TABS``: passed in, so that this module imports no tab)."""

    config: GPT2Config
    options: BookOptions
    modules: tuple[ModuleType, ...]

    @property
    def T(self) -> int:
        return self.options.context

    @property
    def logits_all(self) -> bool:
        return self.options.logits_all

    @property
    def typed(self) -> TypedLimits | None:
        return self.options.typed

    @property
    def generate(self) -> int:
        return self.options.generate

    @property
    def steer(self) -> bool:
        return self.options.steer

    @property
    def sae(self) -> tuple[int, int] | None:
        return self.options.sae

    def has(self, switch: str) -> bool:
        """The book has the tabs of this Switch (by name)."""
        return switch in self.options.switches

    @property
    def switches(self) -> list[Switch]:
        """Every switch the registry's tabs declare, in book order (whether on or off in this book)."""
        return [m.SWITCH for m in self.modules if hasattr(m, "SWITCH")]

    @cached_property
    def texts(self) -> configparser.ConfigParser:
        return load_texts()

    @cached_property
    def tabs(self) -> list[Tab]:
        tabs: list[Tab] = []
        placed: dict[str, Region] = {}  # every region placed so far, by name
        for module in self.modules:
            for tab in module.tabs(self, placed):
                tab.module = module
                tabs.append(tab)
                placed |= {r.name: r for r in tab.regions}
        self._number_steps(tabs)
        return tabs

    @cached_property
    def regions(self) -> dict[str, Region]:
        return {r.name: r for tab in self.tabs for r in tab.regions}

    def region(self, name: str) -> Region:
        return self.regions[name]

    def tab(self, name: str) -> Tab:
        return next(t for t in self.tabs if t.name == name)

    def compute_tabs(self) -> list[Tab]:
        """The tabs that hold regions: the ones ``sheetgpt check`` compares."""
        return [t for t in self.tabs if t.regions]

    @cached_property
    def present(self) -> tuple[ModuleType, ...]:
        """The tab modules that placed at least one tab in this book, in book order."""
        return tuple(m for m in self.modules if any(t.module is m for t in self.tabs))

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
                key, block = region.name, tab.name
                for prefix in ("nll.", "new."):  # the training book's: its own section, else the stage's
                    if key.startswith(prefix) and not self.texts.has_section(key):
                        key = key[len(prefix) :]
                if key.startswith(("h.", "dh.")):  # one text for every block; dh.0.mlp.gelu: [dmlp.gelu]
                    head, n, key = key.split(".", 2)
                    key, block = (key, block) if head == "h" else (f"d{key}", f"Block {n}")
                section = self.texts[key] if self.texts.has_section(key) else {}
                region.text = {f: section.get(f, "").format(**fill, block=block) for f in ("title", "explain")}
                region.step = f"{tab.name} · step {k}" if tab.kind == COMPUTE else tab.name
