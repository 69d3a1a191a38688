"""A1 references, sheet names in formulas, and the spreadsheet limits: defined here once.

Rows and columns are 0-based, as in xlsxwriter; column letters come from
``xlsxwriter.utility``. Sheet names are quoted by one rule of our own (see ``quote_sheet``).
"""

from __future__ import annotations

import re
from functools import cache

from xlsxwriter.utility import xl_col_to_name

from .errors import WorkbookError

# Excel's limits (the file format allows no more; LibreOffice 7.4 and Gnumeric read the same).
MAX_ROWS = 1_048_576
MAX_COLS = 16_384
MAX_FORMULA_CHARS = 8_192  # a formula's text, without the leading '='
MAX_CELL_CHARS = 32_767  # the text of one cell
MAX_NESTING = 64  # nested function calls Excel accepts in one formula

# Error values, in the order of their ERROR.TYPE codes (1..7).
ERRORS = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")

_CELL_RE = re.compile(r"\$?([A-Za-z]{1,3})\$?([0-9]{1,7})")
_PLAIN_NAME = re.compile(r"[^\W\d]\w*")


@cache
def col_name(col: int) -> str:
    """0-based column -> letters: 0 -> 'A', 27 -> 'AB'."""
    return xl_col_to_name(col)


@cache
def col_index(letters: str) -> int:
    """Column letters -> 0-based column: 'A' -> 0, 'ab' -> 27."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def cell(row: int, col: int, row_abs: bool = False, col_abs: bool = False) -> str:
    """0-based (row, col) -> 'B5', '$B5', 'B$5' or '$B$5'."""
    return f"{'$' if col_abs else ''}{col_name(col)}{'$' if row_abs else ''}{row + 1}"


def span(r0: int, c0: int, r1: int, c1: int, row_abs=(True, True), col_abs=(True, True)) -> str:
    """The range from (r0, c0) to (r1, c1) inclusive, absoluteness given for each end: '$C$5:$AN$20'."""
    return f"{cell(r0, c0, row_abs[0], col_abs[0])}:{cell(r1, c1, row_abs[1], col_abs[1])}"


def parse_cell(ref: str) -> tuple[int, int]:
    """'AB12' or '$AB$12' -> 0-based (row, col) = (11, 27)."""
    m = _CELL_RE.fullmatch(ref.strip())
    if not m:
        raise WorkbookError(f"bad cell reference {ref!r}")
    return int(m.group(2)) - 1, col_index(m.group(1))


def parse_range(ref: str) -> tuple[int, int, int, int]:
    """'B5:E20' -> 0-based inclusive (r0, c0, r1, c1); a single cell is a 1x1 range."""
    a, _, b = ref.partition(":")
    r0, c0 = parse_cell(a)
    r1, c1 = parse_cell(b) if b else (r0, c0)
    return min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1)


def quote_sheet(name: str) -> str:
    """A sheet name as a formula writes it: 'wte', "'Block 0'", "'h.0.attn.c_attn.w'".

    A name of letters, digits and underscores that starts with neither a digit stays bare; any
    other is quoted, with quotes doubled. Unlike ``xlsxwriter.utility.quote_sheetname``, names with
    dots are quoted too: every engine we prove reads them so, and our books have always been
    written so. Our tab names never look like cell references ('A1', 'R1C1'), which would
    also need quotes.
    """
    if _PLAIN_NAME.fullmatch(name):
        return name
    return "'" + name.replace("'", "''") + "'"


def sheet_prefix(name: str) -> str:
    """The prefix that refers to a sheet from another: 'wte!', "'Block 0'!"."""
    return quote_sheet(name) + "!"


def where(sheet: str, row: int, col: int) -> str:
    """A cell named for a message: "'Block 0'!C5"."""
    return sheet_prefix(sheet) + cell(row, col)
