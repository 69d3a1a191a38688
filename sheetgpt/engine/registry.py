"""The engines ``check`` can recompute a book in: one line each, and the protocol their modules follow.

A backend is one module under ``sheetgpt.engine`` plus one line in ``BACKENDS``. The CLI's
``--engine`` choices and help, ``check`` and the tests' availability marks all come from here.
This module imports no backend until one is asked for, so the CLI starts fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from ..errors import WorkbookError

if TYPE_CHECKING:
    from .book import Book
    from .values import Values


class Backend(Protocol):
    """What a backend module defines.

    ``SENTINEL``: the engine could hand back the values the file stores instead of recomputing,
    so every run proves it recomputed: a sentinel sheet whose cached value is wrong must come back
    as 1/7 (``libreoffice.inject_sentinel``). ``TYPED_EDITS``: ``recompute`` takes ``edits``
    (``{(sheet, "B4"): {"type": text}}``: a text typed into a cell as a person types it).
    ``MISSING``: the one line that says how to install it.
    """

    SENTINEL: bool
    TYPED_EDITS: bool
    MISSING: str

    def available(self) -> bool: ...

    def recompute(
        self, path: Path, book: Book, *, progress=None, timeout: float = 1800, notice=None, edits=None
    ) -> Values: ...


@dataclass(frozen=True)
class Entry:
    name: str  # what --engine takes
    module: str  # sheetgpt.engine.<module>
    description: str  # one line for --help

    def load(self) -> Backend | ModuleType:
        return importlib.import_module(f"{__package__}.{self.module}")


BACKENDS = (
    Entry("fast", "fast", "our vectorized evaluator"),
    Entry("formulas", "formulas_engine", "the formulas package (small books)"),
    Entry("libreoffice", "libreoffice", "LibreOffice headless, recalculation forced and proven"),
    Entry("gnumeric", "gnumeric", "Gnumeric's ssconvert --recalc, recalculation proven"),
    Entry("ironcalc", "ironcalc_engine", "IronCalc (pip install 'sheetgpt[ironcalc]'), recalculation proven"),
)
ENGINES = tuple(e.name for e in BACKENDS)


def backend(name: str) -> Backend | ModuleType:
    """The module of engine ``name``; an unknown name is a one-line WorkbookError."""
    for e in BACKENDS:
        if e.name == name:
            return e.load()
    raise WorkbookError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


def available(name: str) -> bool:
    """True when engine ``name`` can run on this machine."""
    return backend(name).available()


def help_text() -> str:
    """The --engine help: one clause per engine."""
    return "; ".join(f"{e.name}: {e.description}" for e in BACKENDS) + "."
