"""Headless LibreOffice recalculation (sheetgpt.engine.libreoffice)."""

import zipfile

import lo_batch
import numpy as np
import pytest
import xlsxwriter

from sheetgpt.engine import libreoffice as lo
from sheetgpt.engine.values import Values
from sheetgpt.errors import SheetGPTError, WorkbookError


def _book(path):
    wb = xlsxwriter.Workbook(str(path), {"use_future_functions": True})
    a = wb.add_worksheet("A")
    w = wb.add_worksheet("W")
    x = np.arange(12, dtype=float).reshape(4, 3) / 8
    wt = np.arange(15, dtype=float).reshape(3, 5) / 4 - 1
    bias = np.array([0.5, -1, 2, 0, 0.25])
    for i in range(4):
        a.write_row(i, 0, x[i])
    for i in range(3):
        w.write_row(i, 0, wt[i])
    w.write_row(4, 0, bias)
    a.write_array_formula("A6:E9", "{=MMULT(A1:C4,W!A1:E3)+W!A5:E5}")
    a.write_formula("A11", "=1/3", None, 42)  # wrong cached value: must be recomputed
    a.write_formula("B11", "=_xlfn.VAR.P(A1:C1)", None, 0)
    a.write_formula("C11", '=IF(1>2,1,"")', None, "junk")
    a.write_formula("D11", "=1/0", None, 7)
    v = wb.add_worksheet("vocab")
    for i, tok in enumerate(["ab", "a", "A", "a*", "hello"]):
        v.write_string(i, 0, tok)
    a.write_string("A13", "A")
    a.write_array_formula("B13:B13", "{=IFERROR(MATCH(TRUE,EXACT(vocab!$A$1:$A$5,A13),0),-1)}", None, 0)
    a.write_formula("C13", "=B13*10", None, 0)
    wb.close()
    return x @ wt + bias


@pytest.mark.libreoffice
def test_recalculate_values_text_errors_and_precision(tmp_path):
    path = tmp_path / "book.xlsx"
    expected = _book(path)
    r = lo.recalculate(path)
    assert r.sheets == ["A", "W", "vocab"]  # the injected sentinel sheet is not reported
    assert r.sentinel == 1 / 7
    assert r.sentinel_on_load == 1 / 7  # the fresh profile recalculates on load, too
    num = r.numbers["A"]
    np.testing.assert_allclose(num[5:9, 0:5], expected, rtol=1e-14)
    assert num[10, 0] == 1 / 3  # exact double, not the 42 cached in the file, not 15 digits
    assert num[10, 1] == np.var(np.arange(3) / 8)
    vals = r.values["A"]
    assert vals[10, 2] == ""  # formula giving "" is text "", not empty
    assert vals[10, 3] == "#DIV/0!" and r.errors["A"][(10, 3)] == "#DIV/0!"
    assert np.isnan(num[10, 3])
    assert vals[11, 0] is None  # empty row
    assert vals[12, 0] == "A" and vals[12, 1] == 3.0 and vals[12, 2] == 30.0
    assert r.value("vocab", "A4") == "a*"
    assert r.value("A", "Z99") is None


@pytest.mark.libreoffice
def test_edit_text_cell_changes_match(tmp_path):
    path = tmp_path / "book.xlsx"
    _book(path)
    r = lo.recalculate(path, edits={("A", "A13"): "a*", ("A", "A1"): 100.0}, sheets=["A"])
    assert r.sheets == ["A"]
    assert r.value("A", "B13") == 4.0  # exact, case-sensitive, no wildcard
    assert r.value("A", "C13") == 40.0
    assert r.value("A", "A6") == 100 * -1 + (1 / 8) * 0.25 + (2 / 8) * 1.5 + 0.5  # -99.09375, exact
    # a str edit is text even when it looks like a formula
    r = lo.recalculate(path, edits={("A", "A13"): "=1+1"}, sheets=["A"])
    assert r.value("A", "A13") == "=1+1"
    assert r.value("A", "B13") == -1.0


@pytest.mark.libreoffice
def test_sentinel_proof_fails_loudly(tmp_path, monkeypatch):
    path = tmp_path / "book.xlsx"
    _book(path)
    # Pretend the sentinel should read something else: the bridge must refuse to report values.
    monkeypatch.setattr(lo, "SENTINEL_VALUE", 0.5)
    with pytest.raises(WorkbookError, match="recalculation not proven"):
        lo.recalculate(path)


def test_inject_sentinel_keeps_the_book(tmp_path):
    import openpyxl

    path, out = tmp_path / "book.xlsx", tmp_path / "with_sentinel.xlsx"
    _book(path)
    lo.inject_sentinel(path, out)
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["A", "W", "vocab", lo.SENTINEL_SHEET]
    assert wb[lo.SENTINEL_SHEET]["A1"].value == "=" + lo.SENTINEL_FORMULA
    assert openpyxl.load_workbook(out, data_only=True)[lo.SENTINEL_SHEET]["A1"].value == lo.SENTINEL_CACHED
    with pytest.raises(WorkbookError):
        lo.inject_sentinel(out, tmp_path / "again.xlsx")
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"not a zip")
    with pytest.raises(WorkbookError, match="not an xlsx"):
        lo.inject_sentinel(bad, out)
    with zipfile.ZipFile(out) as z:
        assert "xl/worksheets/_sgpt_sentinel.xml" in z.namelist()


@pytest.mark.libreoffice
def test_save_as_and_convert(tmp_path):
    import openpyxl

    path = tmp_path / "book.xlsx"
    _book(path)
    saved = tmp_path / "saved.xlsx"
    lo.recalculate(path, sheets=["W"], save_as=saved)
    wb = openpyxl.load_workbook(saved, data_only=True)
    assert lo.SENTINEL_SHEET not in wb.sheetnames
    assert wb["A"]["A11"].value == pytest.approx(1 / 3, rel=1e-14)  # 15 significant digits
    conv = lo_batch.convert_with_recalc(path, tmp_path / "conv" / "c.xlsx")
    wb = openpyxl.load_workbook(conv, data_only=True)
    assert wb["A"]["A11"].value == pytest.approx(1 / 3, rel=1e-14)
    assert wb["A"]["B13"].value == 3


@pytest.mark.libreoffice
def test_timeout_is_one_line(tmp_path):
    path = tmp_path / "book.xlsx"
    _book(path)
    with pytest.raises(WorkbookError, match="timed out after 0.5 s"):
        lo.recalculate(path, timeout=0.5)


def test_missing_libreoffice(monkeypatch, tmp_path):
    monkeypatch.setattr(lo, "find_soffice", lambda: None)
    with pytest.raises(SheetGPTError) as e:
        lo.recalculate(tmp_path / "x.xlsx")
    assert str(e.value.message) == lo.MISSING
    assert e.value.exit_code == 2
    with pytest.raises(SheetGPTError, match="apt-get install libreoffice-calc-nogui python3-uno"):
        lo_batch.convert_with_recalc(tmp_path / "x.xlsx", tmp_path / "y.xlsx")


def test_missing_uno(monkeypatch, tmp_path):
    monkeypatch.setattr(lo, "_AVAILABLE", None)
    monkeypatch.setattr(lo, "SYSTEM_PYTHON", str(tmp_path / "no-python"))
    assert lo.available() is False
    with pytest.raises(SheetGPTError, match="not installed"):
        lo.recalculate(tmp_path / "x.xlsx")
    monkeypatch.setattr(lo, "_AVAILABLE", None)


def test_one_cell_by_its_a1_address():
    values = Values({"s": np.array([[1.5, np.nan], [np.nan, np.nan]])}, {"s": {(1, 1): "x"}}, {"s": {(0, 1): "#N/A"}})
    assert values.value("s", "A1") == 1.5 and values.value("s", "$B$1") == "#N/A" and values.value("s", "B2") == "x"
    assert values.value("s", "A2") is None and values.value("s", "AB12") is None
    with pytest.raises(WorkbookError):
        values.value("s", "R1C1")
