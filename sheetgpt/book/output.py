"""The book being written, as each tab module's ``write(out, tab)`` sees it (``book.writer`` makes it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import xlsxwriter

from .formats import Formats
from .layout import Layout, Tab

if TYPE_CHECKING:
    from ..prompt import Prompt
    from ..tokenizer import Tokenizer
    from .trace import BookInputs
    from .xlsx.worksheet import FormulaSheet


@dataclass
class BookWriter:
    """The book being written: the workbook, the layout, the inputs and the trace (``book.trace``)."""

    wb: xlsxwriter.Workbook
    fmt: Formats
    layout: Layout
    prompt: Prompt
    tokenizer: Tokenizer
    trace: dict
    inputs: BookInputs  # each tab's inputs, as the trace was computed from them
    source: str  # where the model came from (the Guide's provenance)
    progress: Callable[[int, str], None] | None = None
    sheets: dict = field(default_factory=dict)  # tab name -> FormulaSheet
    streamed: dict[str, np.ndarray] = field(default_factory=dict)  # tab name -> values written by assemble
    exercises: tuple[str, ...] = ()  # stages written as empty cells for a learner to fill (sheetgpt.exercises)

    def cached(self, name: str) -> np.ndarray:
        """A stage's cached values: the reference's (an exercise book's cells that wait on a blank
        get "fill exercise X first" afterwards: ``fill_cached.cold``)."""
        return np.asarray(self.trace[name], dtype=np.float64)

    def sheet(self, tab: Tab) -> FormulaSheet:
        return self.sheets[tab.name]

    def stream(self, tab: Tab, values: np.ndarray) -> None:
        """Leave the tab empty here: ``assemble`` writes these [rows, cols] numbers into it."""
        self.streamed[tab.name] = values

    def done(self, tab: Tab) -> None:
        if self.progress:
            self.progress(1, tab.name)
