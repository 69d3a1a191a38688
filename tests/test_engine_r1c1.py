"""Formula text to R1C1 keys (sheetgpt.engine.r1c1) and to named AST nodes (sheetgpt.engine.parser)."""

from __future__ import annotations

import random

import pytest

from sheetgpt.engine.parser import Bin, parse
from sheetgpt.engine.r1c1 import column_keys, shift_formula, to_r1c1


def test_r1c1_key_groups_relative_copies():
    assert to_r1c1("B4+1", 4, 1) == to_r1c1("B5+1", 5, 1)
    assert to_r1c1("$B$4+1", 4, 1) == to_r1c1("$B$4+1", 9, 3)
    assert to_r1c1('"A1"&A1', 0, 0) == '"A1"&R[0]C[0]'
    assert to_r1c1("LOG10(A1)", 0, 0) == "LOG10(R[0]C[0])"
    assert type(parse("-2^2")) is Bin
    node = parse("'Block 0'!C5+wte!B$1:B$300", 0, 0)
    assert node.a.sheet == "Block 0" and node.b.sheet == "wte"


@pytest.mark.parametrize(
    "text,row,col,key",
    [
        # each pair has one skeleton (the text with its digit runs as #), so the second reuses the first's parse
        ("A1+B2", 0, 0, "R[0]C[0]+R[1]C[1]"),
        ("A5+B9", 2, 1, "R[2]C[-1]+R[6]C[0]"),
        ("'Block 0'!C5*2", 0, 0, "'Block 0'!R[4]C[2]*2"),
        ("'Block 1'!C7*3", 1, 0, "'Block 1'!R[5]C[2]*3"),
        ('"x1"&A2', 0, 0, '"x1"&R[1]C[0]'),
        ('"x2"&A3', 0, 0, '"x2"&R[2]C[0]'),
        ("$A$1:B2+1.5", 0, 0, "R1C1:R[1]C[1]+1.5"),
        ("$A$3:B4+2.25", 1, 1, "R3C1:R[2]C[0]+2.25"),
        ("A1234567", 0, 0, "R[1234566]C[0]"),
        ("A12345678", 0, 0, "A12345678"),  # 8 digits: not a row, so not a reference
    ],
)
def test_r1c1_keys_of_one_skeleton(text, row, col, key):
    assert to_r1c1(text, row, col) == key


def test_column_keys_equal_to_r1c1_cell_by_cell():
    """r1c1.column_keys (one parse per filled run of a column) against to_r1c1 per cell, on
    columns that are fills (shift_formula), fills with one literal changed (0.05 -> 0.5, a
    10-digit number shortened) and unrelated texts."""
    rnd = random.Random(0)
    parts = [
        "A1",
        "$A1",
        "A$1",
        "$A$1",
        "B10",
        "AA5",
        "'s 1'!B2",
        "x!C3",
        '"A1"',
        "3",
        "1E+10",
        "SUM(A1:B2)",
        "$C$3:C4",
        "R1C1",
        "B99",
        "0.05",
        "0.5",
        "A01",
        "$B$09",
        "12345678",
        "1000000000",
        "12345678901234567890123",
    ]
    fills = 0
    for _ in range(3000):
        col, top = rnd.randint(0, 30), rnd.randint(0, 50)
        base = "+".join(rnd.choice(parts) for _ in range(rnd.randint(1, 4)))
        texts = []
        for i in range(rnd.randint(1, 8)):
            r = rnd.random()
            if r < 0.7:
                texts.append(shift_formula(base, i, 0))
            elif r < 0.85:
                texts.append(base.replace("0.05", "0.5", 1).replace("1000000000", "100000000", 1))
            else:
                texts.append("+".join(rnd.choice(parts) for _ in range(rnd.randint(1, 4))))
        want = [to_r1c1(t, top + i, col) for i, t in enumerate(texts)]
        assert column_keys(texts, top, col) == want, (texts, top, col)
        fills += sum(a == b for a, b in zip(want, want[1:]))
    assert fills > 3000  # most columns were fills
