"""The one rule for every editable (yellow) cell a learner types into, in the sheet and in the reference.

A cell's *value* is what an engine computes for it: a constant as typed, or a formula's result (a
formula is allowed: ``=1/2`` is the number 0.5, ``=" slow"`` the text " slow"). Two kinds of cell:

- a **number cell** (``Number``: strength, block L, temperature, a position, a block number) is used
  when its value is a number or a boolean (TRUE is 1, as in the sheet's arithmetic and as every engine
  reports a formula's boolean; text such as "3", an error or an empty cell is not), finite, and from
  ``lo`` to ``hi``; a *whole* cell also within ``WHOLE_TOL`` of a whole
  number, and then the rounded number is what is used (so 1.0000000000000002 is block 1 in every
  engine: LibreOffice compares numbers with a tolerance of its own, the others exactly). The range
  of a whole cell is tested on the rounded number. Anything else: the tab's status cell shows one
  message and the tab falls back (steering off, the default block, temperature 1, ...); nothing
  else changes, and no value reaches a formula where it could overflow or raise an error.
- a **token cell** (``token_text``: a token text looked up with ``MATCH(TRUE,EXACT(vocab,cell),0)``)
  is the text EXACT compares: a text as it is, a number as the General format shows it ("5"),
  TRUE/FALSE, an error a text no vocabulary holds (then the id is -1 and the tab says so).

``Number.ok_formula`` is the sheet's side of the rule and ``Number.usable`` the reference's, next to
each other so they cannot drift. A tab reads its cells back with ``held`` (a constant, or
``FORMULA`` for a formula the book did not write) and replaces each ``FORMULA`` with the engine's
value (``computed``) in its ``recomputed`` hook, before the reference is computed (``sheetgpt
check``). docs/robustness.md has the table of every editable cell and its rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.values import num_text
from . import readback

if TYPE_CHECKING:
    from ..engine.book import Sheet
    from ..engine.values import Values

WHOLE_TOL = 1e-9  # a whole cell's value may be this far from a whole number (then it is rounded)


class _Formula:
    """The value of a cell that holds a formula: known once an engine has computed it."""

    def __repr__(self) -> str:
        return "FORMULA"


FORMULA = _Formula()


class Error(str):
    """An error value (``#DIV/0!``) a cell holds or computes: not a number, not a token text."""


def held(sheet: Sheet, r: int, c: int):
    """What a cell holds: a float, a str, a bool, an ``Error``, None (empty) or ``FORMULA``."""
    value = constant(sheet, r, c)
    if value is None and has_formula(sheet, r, c):
        return FORMULA
    return value


def constant(sheet: Sheet, r: int, c: int):
    """The constant a cell holds (a float, a str, a bool, an ``Error``), or None (empty, or a formula)."""
    if (r, c) in sheet.strings:
        return sheet.strings[(r, c)]
    if (r, c) in sheet.booleans:
        return bool(sheet.booleans[(r, c)])
    if (r, c) in sheet.errors:
        return Error(sheet.errors[(r, c)])
    return readback.held(sheet, r, c)


def has_formula(sheet: Sheet, r: int, c: int) -> bool:
    """Whether the cell holds a formula (plain, shared or part of an array range)."""
    f = sheet.formulas
    for fr, fc, _text, ref in f:
        if (fr, fc) == (r, c):
            return True
        if ref is not None and ref[0] <= r <= ref[2] and ref[1] <= c <= ref[3]:
            return True
    return False


def formula_text(sheet: Sheet, r: int, c: int) -> str | None:
    """The formula text of a cell (without '='), or None."""
    for fr, fc, text, _ref in sheet.formulas:
        if (fr, fc) == (r, c):
            return text
    return None


def computed(values: Values, tab: str, r: int, c: int):
    """An engine's value of a cell: a float, a str, an ``Error``, or None (empty). (Engines give a
    boolean result as 1 or 0.)"""
    if (r, c) in values.errors.get(tab, {}):
        return Error(values.errors[tab][(r, c)])
    return values.describe(tab, r, c)


@dataclass(frozen=True)
class Number:
    """A number cell's rule: a finite number from ``lo`` to ``hi`` (``whole``: rounded, within
    ``WHOLE_TOL`` of a whole number)."""

    lo: float
    hi: float
    whole: bool = False

    def usable(self, value) -> float | None:
        """The number the book uses for this value, or None (the tab falls back)."""
        if isinstance(value, bool):
            value = float(value)  # TRUE is 1, as in the sheet's arithmetic and as engines report a formula's TRUE
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        if self.whole:
            rounded = float(math.floor(value + 0.5)) if value >= 0 else -float(math.floor(-value + 0.5))
            if abs(value - rounded) > WHOLE_TOL:
                return None
            value = rounded + 0.0  # -0.0 is 0
        return float(value) if self.lo <= value <= self.hi else None

    def ok_formula(self, ref: str) -> str:
        """1 when the cell ``ref`` is usable, else 0: nested IFs, so a text or an error never
        reaches the arithmetic (every engine gives 0 for it, none an error)."""
        x = number_formula(ref)
        if self.whole:
            r = f"ROUND({x},0)"
            test = f"AND(ABS({x}-{r})<={_num(WHOLE_TOL)},{r}>={_num(self.lo)},{r}<={_num(self.hi)})"
        else:
            test = f"AND({x}>={_num(self.lo)},{x}<={_num(self.hi)})"
        return f"IF(OR(ISNUMBER({ref}),ISLOGICAL({ref})),IF({test},1,0),0)"

    def used_formula(self, ref: str) -> str:
        """The number used, given that ``ok_formula`` is 1: the cell's value (rounded when whole)."""
        return f"ROUND({number_formula(ref)},0)" if self.whole else number_formula(ref)

    def describe(self) -> str:
        """'a whole number from 0 to 1', 'a number from -1000000 to 1000000'."""
        return f"{'a whole number' if self.whole else 'a number'} from {_num(self.lo)} to {_num(self.hi)}"


def number_formula(ref: str) -> str:
    """A number cell's value as a number (TRUE is 1): ``ref*1``, for a cell that ``ok_formula`` accepts."""
    return f"({ref}*1)"


def _num(x: float) -> str:
    """A bound as a formula constant and as text: 0, 1000000, 0.001, 1E-09."""
    return num_text(float(x))


def token_text(value) -> str:
    """The text ``EXACT`` compares for a token cell's value (``held`` or ``computed``): a text as it
    is, a number as the General format shows it ('5'), TRUE/FALSE, '' for an empty cell; an error
    (or a formula not yet computed) a text no vocabulary holds, so its id is -1."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, Error):
        return str(value) + "\0"  # no vocabulary entry holds a NUL after '#'
    if value is FORMULA:
        return "\0formula"
    if isinstance(value, (int, float)):
        return num_text(float(value))
    return str(value)
