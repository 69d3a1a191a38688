"""The registry of spreadsheet functions: each is registered where it is defined, with its arity."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Function(NamedTuple):
    """``run(ctx, args)``: args are what ``Context.eval`` gave for each argument (a Batch, a
    CellRange, or None where left out); returns a Batch (or a CellRange)."""

    run: Callable
    min_args: int
    max_args: int


FUNCTIONS: dict[str, Function] = {}


def function(name: str, min_args: int = 1, max_args: int = 255):
    """Register the decorated ``run(ctx, args)`` as ``name`` taking min_args..max_args arguments
    (as Excel allows; a call outside them is refused before evaluation)."""

    def register(run: Callable) -> Callable:
        FUNCTIONS[name] = Function(run, min_args, max_args)
        return run

    return register
