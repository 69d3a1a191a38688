"""A1 references and sheet names: against xlsxwriter's own utilities and Excel's documented rules."""

from __future__ import annotations

import random

import pytest
from xlsxwriter.utility import xl_cell_to_rowcol, xl_rowcol_to_cell

from sheetgpt import a1
from sheetgpt.errors import WorkbookError


def test_cells_round_trip_and_equal_xlsxwriter():
    rng = random.Random(0)
    for _ in range(5000):
        r, c = rng.randrange(a1.MAX_ROWS), rng.randrange(a1.MAX_COLS)
        ra, ca = rng.random() < 0.5, rng.random() < 0.5
        text = a1.cell(r, c, ra, ca)
        assert text == xl_rowcol_to_cell(r, c, ra, ca)
        assert a1.parse_cell(text) == (r, c) == xl_cell_to_rowcol(text)
    assert a1.col_name(a1.MAX_COLS - 1) == "XFD"


def test_span_writes_and_parse_range_reads_ranges_in_either_corner_order():
    assert a1.span(4, 2, 19, 39) == "$C$5:$AN$20"
    assert a1.span(4, 2, 4, 39, (False, False), (True, True)) == "$C5:$AN5"
    assert a1.parse_range("E20:B5") == (4, 1, 19, 4)
    assert a1.parse_range("$B$5") == (4, 1, 4, 1)
    with pytest.raises(WorkbookError):
        a1.parse_cell("5B")


@pytest.mark.parametrize(
    "name, quoted",
    [("wte", "wte"), ("Block 0", "'Block 0'"), ("h.0.attn.c_attn.w", "'h.0.attn.c_attn.w'"), ("0x", "'0x'"),
     ("it's", "'it''s'"), ("Final norm", "'Final norm'"), ("_sgpt", "_sgpt")],
)
def test_sheet_names_are_quoted_only_when_they_need_it(name, quoted):
    assert a1.quote_sheet(name) == quoted
    assert a1.sheet_prefix(name) == quoted + "!"
    assert a1.where(name, 4, 2) == quoted + "!C5"
