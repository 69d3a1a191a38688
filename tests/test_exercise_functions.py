"""The functions a learner may use to fill an exercise, in the fast engine; the oracle is Python's
statistics and math modules (not the code under test)."""

from __future__ import annotations

import math
import statistics

import pytest
import xlsxwriter

from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.errors import WorkbookError

DATA = [0.5, -1.25, 2.0, 3.5, -0.75]


def _eval(tmp_path, formulas: list[str], strict: bool = False) -> list[float]:
    path = tmp_path / "f.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("x")
    for i, v in enumerate(DATA):
        ws.write_number(0, i, v)
    for k, f in enumerate(formulas):
        ws.write_formula(2 + k, 0, f)
    wb.close()
    values = evaluate(read_workbook(path), strict=strict)
    return [values.describe("x", 2 + k, 0) for k in range(len(formulas))]


def test_variance_and_friends(tmp_path):
    cases = {
        "=_xlfn.VAR.P(A1:E1)": statistics.pvariance(DATA),
        "=VARP(A1:E1)": statistics.pvariance(DATA),
        "=_xlfn.VAR.S(A1:E1)": statistics.variance(DATA),
        "=VAR(A1:E1)": statistics.variance(DATA),
        "=_xlfn.STDEV.P(A1:E1)": statistics.pstdev(DATA),
        "=STDEVP(A1:E1)": statistics.pstdev(DATA),
        "=_xlfn.STDEV.S(A1:E1)": statistics.stdev(DATA),
        "=STDEV(A1:E1)": statistics.stdev(DATA),
        "=SUMSQ(A1:E1)": math.fsum(x * x for x in DATA),
        "=SUMSQ(A1:E1)/COUNT(A1:E1)-AVERAGE(A1:E1)^2": statistics.pvariance(DATA),
        "=LOG(100)": 2.0,
        "=LOG(8,2)": 3.0,
        "=LOG10(1000)": 3.0,
        "=ERF(0.5)": math.erf(0.5),
        "=ERF(-0.3,0.5)": math.erf(0.5) - math.erf(-0.3),
        "=_xlfn.ERF.PRECISE(1.5)": math.erf(1.5),
        "=_xlfn.NORM.S.DIST(0.7,1)": 0.5 * (1 + math.erf(0.7 / math.sqrt(2))),
        "=_xlfn.NORM.S.DIST(0.7,0)": math.exp(-0.49 / 2) / math.sqrt(2 * math.pi),
        "=NORMSDIST(-1.2)": 0.5 * (1 + math.erf(-1.2 / math.sqrt(2))),
    }
    got = _eval(tmp_path, list(cases))
    for (f, want), g in zip(cases.items(), got):
        assert g == pytest.approx(want, rel=1e-13, abs=1e-15), f


def test_sample_statistics_of_one_number_are_div0(tmp_path):
    assert _eval(tmp_path, ["=_xlfn.VAR.S(A1)", "=STDEV(A1)", "=LOG(-1)", "=LOG(2,1)"]) == [
        "#DIV/0!",
        "#DIV/0!",
        "#NUM!",
        "#DIV/0!",
    ]


def test_an_unknown_function_suggests_libreoffice(tmp_path):
    with pytest.raises(WorkbookError, match=r"unsupported function GAMMALN .*--engine libreoffice"):
        _eval(tmp_path, ["=GAMMALN(3)"], strict=True)
    assert _eval(tmp_path, ["=GAMMALN(3)", "=_xlfn.VAR.P(nosuch)", "=_xlfn.VAR.P(embed A1:E1)"]) == ["#NAME?"] * 3


def test_counta_counts_every_cell_that_is_not_empty(tmp_path):
    """COUNTA (an exercise book's array guard asks whether an exercise is untouched): numbers, texts,
    empty text, booleans and errors count; empty cells do not."""
    path = tmp_path / "c.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("x")
    ws.write_number(0, 0, 1.5)
    ws.write_string(0, 1, "a")
    ws.write_formula(0, 2, '=""', None, "")
    ws.write_boolean(0, 3, True)
    ws.write_formula(0, 4, "=1/0")
    for k, f in enumerate(["=COUNTA(A1:H1)", "=COUNTA(F1:H1)", "=COUNTA(A1,G1,B1:C1)", "=COUNTA(A1:H1)=0"]):
        ws.write_formula(2 + k, 0, f)
    wb.close()
    values = evaluate(read_workbook(path))
    assert [values.describe("x", 2 + k, 0) for k in range(3)] == [5.0, 0.0, 3.0]
    assert values.numbers["x"][5, 0] == 0.0  # FALSE
