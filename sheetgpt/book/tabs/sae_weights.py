"""The SAE's weight tabs (books with the Features tab): grey tabs like the model's, the numbers the
Features tab and feature steering read.

- ``sae.ids`` [1, N]: each column's feature number in the published SAE (0 .. d_sae - 1; with
  ``--sae-features N`` only the N features the book holds);
- ``sae.W_enc`` [d, N], ``sae.b_enc`` [1, N]: the encoder's columns of those features;
- ``sae.W_dec`` [N, d], ``sae.b_dec`` [1, d]: their decoder rows and the decoder bias.

The writer leaves them empty; the xlsx backend streams their numbers (9 significant digits, as the model's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import a1
from ...errors import WorkbookError
from ...weight_text import stored_values
from ..layout import WEIGHTS, Layout, Region, Tab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ...sae import SAE
    from ..output import BookWriter
    from ..trace import BookInputs, Build

IDS, W_ENC, B_ENC, W_DEC, B_DEC = "sae.ids", "sae.W_enc", "sae.b_enc", "sae.W_dec", "sae.b_dec"
LABELS = "labels"  # a built book's inputs: each column's label (the Features tab shows them; check reads none)


def shapes(layout: Layout) -> dict[str, tuple[int, int]]:
    """Each SAE weight tab's (rows, cols) for this book; none without an SAE."""
    if not layout.sae:
        return {}
    d, n = layout.config.n_embd, layout.sae[1]
    return {IDS: (1, n), W_ENC: (d, n), B_ENC: (1, n), W_DEC: (n, d), B_DEC: (1, d)}


def whole(layout: Layout, name: str) -> str:
    """A whole SAE weight tab as an absolute range: 'sae.W_enc'!$A$1:$GJ$48."""
    rows, cols = shapes(layout)[name]
    return a1.sheet_prefix(name) + a1.span(0, 0, rows - 1, cols - 1)


def column(layout: Layout, name: str, j: int) -> str:
    """Column j of an SAE weight tab, absolute: 'sae.W_dec'!$C$1:$C$192."""
    rows, _ = shapes(layout)[name]
    return a1.sheet_prefix(name) + a1.span(0, j, rows - 1, j)


def row(layout: Layout, name: str) -> str:
    """Row 1 of an SAE weight tab (a vector), absolute: 'sae.ids'!$A$1:$GJ$1."""
    _, cols = shapes(layout)[name]
    return a1.sheet_prefix(name) + a1.span(0, 0, 0, cols - 1)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    return [Tab(name, WEIGHTS, shape=shape) for name, shape in shapes(layout).items()]


def write(out: BookWriter, tab: Tab) -> int:
    out.stream(tab, out.inputs["sae_weights"][tab.name].reshape(tab.shape))
    return 0


def arrays(sae: SAE) -> dict:
    """The tabs' numbers as the book stores them (9 significant digits; the ids exact), and the labels."""
    return {
        LABELS: [sae.label(k) for k in range(sae.d_sae)],
        IDS: np.asarray(sae.feature_ids, np.float64)[None, :],
        W_ENC: stored_values(sae.W_enc),
        B_ENC: stored_values(sae.b_enc)[None, :],
        W_DEC: stored_values(sae.W_dec),
        B_DEC: stored_values(sae.b_dec)[None, :],
    }


def given(build: Build, inputs: BookInputs) -> dict[str, np.ndarray]:
    """The SAE of ``--features`` / ``--sae`` (build.settings["sae"], its features already chosen)."""
    return arrays(build.settings["sae"])


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> dict[str, np.ndarray]:
    """Each SAE weight tab as the book holds it; feature numbers must be distinct whole numbers."""
    values = {}
    for name, (rows, cols) in shapes(layout).items():
        dense = book.sheets[name].dense()
        block = np.full((rows, cols), np.nan)
        r, c = min(rows, dense.shape[0]), min(cols, dense.shape[1])
        block[:r, :c] = dense[:r, :c]
        if np.isnan(block).any():
            r, c = np.argwhere(np.isnan(block))[0]
            raise WorkbookError(f"SAE weight tab {name!r}: cell {a1.cell(int(r), int(c))} holds no number")
        values[name] = block
    values[LABELS] = []
    ids = values[IDS][0]
    if (ids != np.round(ids)).any() or (ids < 0).any() or len(set(ids.tolist())) != len(ids):
        raise WorkbookError(f"SAE weight tab {IDS!r}: feature numbers must be distinct whole numbers from 0")
    return values
