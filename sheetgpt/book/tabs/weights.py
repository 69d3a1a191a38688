"""The weight tabs: one per parameter (wte, wpe, h.0.ln_1.g, ... ln_f.b), GPT-2's [in, out] layout, vectors as one row.

The writer leaves them empty; the xlsx backend streams their numbers straight from numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import a1
from ...checkpoint import param_shapes
from ...errors import WorkbookError
from ..layout import WEIGHTS, Layout, Region, Tab, weight_tab_shape

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    return [Tab(name, WEIGHTS, shape=weight_tab_shape(shape)) for name, shape in param_shapes(layout.config).items()]


def write(out: BookWriter, tab: Tab) -> int:
    out.stream(tab, out.inputs["weights"][tab.name].reshape(tab.shape))
    return 0


def given(build: Build, inputs: BookInputs) -> dict[str, np.ndarray]:
    """Every parameter as the book stores it (9 significant digits, ``weight_text.stored_values``)."""
    return build.weights


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> dict[str, np.ndarray]:
    """Every parameter as the book holds it, in the checkpoint's shape."""
    weights = {}
    for name, shape in param_shapes(layout.config).items():
        sheet = book.sheets[name]
        rows, cols = weight_tab_shape(shape)
        dense = sheet.dense()
        if dense.shape[0] < rows or dense.shape[1] < cols:
            raise WorkbookError(
                f"weight tab {name!r} is {dense.shape[0]}x{dense.shape[1]} cells, expected {rows}x{cols}"
            )
        block = dense[:rows, :cols]
        if np.isnan(block).any():
            r, c = np.argwhere(np.isnan(block))[0]
            found = sheet.strings.get((int(r), int(c)))
            what = f"text {found!r}" if found is not None else "no number"
            raise WorkbookError(
                f"weight tab {name!r}: cell {a1.cell(int(r), int(c))} holds {what}; weights must be numbers"
            )
        weights[name] = block.reshape(shape)
    return weights
