"""The fast engine (sheetgpt.engine.evaluator) against the independent `formulas` engine, on books written here."""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest
import xlsxwriter

from sheetgpt.a1 import cell as cell_name
from sheetgpt.a1 import col_name, parse_cell
from sheetgpt.engine import schedule
from sheetgpt.engine.evaluator import Evaluator, evaluate
from sheetgpt.engine.parser import Err
from sheetgpt.engine.reader import Book, Sheet, read_workbook
from sheetgpt.engine.values import BOOL
from sheetgpt.errors import WorkbookError


def oracle_values(path) -> dict:
    """{(SHEET_UPPER, row, col): value} for every cell `formulas` computed."""
    import formulas

    sol = formulas.ExcelModel().loads(str(path)).finish().calculate()
    out = {}
    for key, rng in sol.items():
        m = re.fullmatch(r"'\[[^\]]+\](.+)'!([A-Z]+[0-9]+)(?::([A-Z]+[0-9]+))?", key)
        if not m:
            continue
        sheet = m.group(1).replace("''", "'")
        r0, c0 = parse_cell(m.group(2))
        val = np.asarray(getattr(rng, "value", rng), dtype=object)
        if val.ndim == 0:
            val = val.reshape(1, 1)
        for i in range(val.shape[0]):
            for j in range(val.shape[1]):
                out[(sheet.upper(), r0 + i, c0 + j)] = val[i, j]
    return out


def ours(res, sheet, r, c):
    k = res.kinds[sheet][r, c]
    if (r, c) in res.errors[sheet]:
        return res.errors[sheet][(r, c)]
    if (r, c) in res.text[sheet]:
        return res.text[sheet][(r, c)]
    if k == BOOL:
        return bool(res.numbers[sheet][r, c])
    return float(res.numbers[sheet][r, c])


def mismatches(book, res, oracle, rel=1e-12) -> list[str]:
    bad = []
    for name, sh in book.sheets.items():
        cells = []
        for r, c, _, rng in sh.formulas:
            if rng:
                cells += [(i, j) for i in range(rng[0], rng[2] + 1) for j in range(rng[1], rng[3] + 1)]
            else:
                cells.append((r, c))
        for r, c in cells:
            want = oracle.get((name.upper(), r, c))
            got = ours(res, name, r, c)
            w = str(want) if type(want).__name__ == "XlError" else want
            if isinstance(w, (bool, np.bool_)):
                ok = isinstance(got, bool) and got == bool(w)
            elif isinstance(w, (int, float, np.floating, np.integer)) and not isinstance(got, (str, bool)):
                ok = math.isclose(got, float(w), rel_tol=rel, abs_tol=1e-300)
            else:
                ok = got == w
            if not ok:
                bad.append(f"{name}!{cell_name(r, c)}: ours {got!r} oracle {w!r}")
    return bad


def _book(path, fill):
    wb = xlsxwriter.Workbook(str(path), {"use_future_functions": True})
    fill(wb)
    wb.close()
    return path


def _functions(wb):
    w = wb.add_worksheet("Block 0")
    d = wb.add_worksheet("h.0.attn.c_attn.w")
    q = wb.add_worksheet("it's")
    for r in range(6):
        for c in range(4):
            d.write_number(r, c, (r * 4 + c) * 0.37 - 2.1)
    q.write_number(0, 0, 0.25)
    w.write_column("A1", [1.5, -2, 3.25, 0, 7])
    w.write_column("B1", ["apple", "Pear", "kiwi", "x", "APPLE"])
    w.write_column("D1", [5, 4, 3, 2, 1])
    w.write_column("D7", [1, 2, 3, 4, 5])
    f = {
        "C1": "=SUM(A1:A5)+'h.0.attn.c_attn.w'!A1",
        "C2": "=AVERAGE(A1:B5)*2^-2",
        "C3": "=_xlfn.VAR.P(A1:A5)",
        "C4": "=MAX(A1:A5)-MIN(A1:A5)+LARGE(A1:A5,2)+SMALL(A1:A5,1)",
        "C5": "=COUNT(A1:B5)+ABS(-3)+EXP(1)+LN(2)+SQRT(2)+TANH(0.5)+PI()+POWER(2,0.5)",
        "C6": '=MATCH("pear",B1:B5,0)',
        "C7": '=MATCH("zzz",B1:B5,0)',
        "C8": "=1/A4",
        "C9": "=IFERROR(1/A4,-1)+IF(A1>1,10,20)",
        "C10": '=B1&"-"&A1',
        "C11": "=EXACT(B1,B5)+ISNUMBER(A1)+ISERROR(C8)+ISTEXT(B2)+AND(1,A1)+OR(0,0)+NOT(0)",
        "C12": "=ROW(A3)+COLUMN(D1)+ROWS(A1:B5)+COLUMNS(A1:B5)+LEN(B2)+N(A2)+CHOOSE(2,5,6,7)+ROUND(2.675,2)",
        "C13": "=INDEX('h.0.attn.c_attn.w'!A1:D6,3,2)+INDEX(A1:A5,4)",
        "C14": "=SUMPRODUCT(A1:A3,'h.0.attn.c_attn.w'!A1:A3)",
        "C15": "=-2^2",
        "C16": '=50%+"3"*2',
        "C17": "=MATCH(3.25,A1:A5,0)",
        "C18": '="a"="A"',
        "C19": "=SQRT(-1)",
        "C20": "=B2+1",
        "C21": "=2^3^2-1E-05*.5",
        "C22": "=MATCH(2.5,D7:D11,1)+MATCH(10,D7:D11,1)+MATCH(2.5,D1:D5,-1)",
        "C23": "=A1<>A2",
        "C24": "=IF(A4,1,C7)",
        "C25": "=MMULT('h.0.attn.c_attn.w'!A1:D1,'h.0.attn.c_attn.w'!A1:A4)",
        "C26": '=EXACT("a","A")',
        "C27": "=LN(0)",
        "C28": "=SUM(A1:A5,B1,2)",
        "C29": "=MATCH(3,D1:D11,0)+MATCH(1,D1:D11,0)",  # the first of two equal numbers
        "C30": "=MATCH(0,D1:D12,0)",  # D6 and D12 are empty: not 0, so #N/A
        "C31": "=MOD(7,3)*1000+MOD(-7,3)*100+MOD(7,-3)*10+MOD(3.25,1)",  # 1, 2, -2, 0.25: the divisor's sign
        "C32": "=MOD(1,0)",
    }
    for k, v in f.items():
        w.write_formula(k, v)
    for r in range(5):
        w.write_formula(r, 4, f"=A{r + 1}*2+$A$1")  # a group of five
    for r in range(5):
        w.write_formula(r, 6, f"=MATCH(D{r + 7},D{r + 1}:D{r + 7},0)")  # a group of MATCHes, each in its own range
    w.write_number("F1", 1)
    for r in range(1, 5):
        w.write_formula(r, 5, f"=F{r}+A{r + 1}")  # reads its own group: row by row
    w.write_array_formula("H1:K4", "{=MMULT(TRANSPOSE('h.0.attn.c_attn.w'!A1:D6),'h.0.attn.c_attn.w'!A1:D6)}")
    w.write_array_formula("H6:K6", "{='h.0.attn.c_attn.w'!A1:D1*2+'h.0.attn.c_attn.w'!A2:D2}")
    w.write_array_formula("H8:H10", '{=EXACT(B1:B3,"apple")}')
    w.write_array_formula("H12:K13", "{='h.0.attn.c_attn.w'!A1:D2-'h.0.attn.c_attn.w'!A1:A2}")
    w.write_array_formula("M1:M1", "{=SUMPRODUCT(('h.0.attn.c_attn.w'!A1:A6>0)*'h.0.attn.c_attn.w'!B1:B6)}")
    w.write_array_formula("N1:N3", "{=EXP('h.0.attn.c_attn.w'!A1:A3-MAX('h.0.attn.c_attn.w'!A1:A3))}")
    for r in range(1, 4):  # one-cell CSE formulas that are fills of each other: evaluated as one group
        w.write_array_formula(f"P{r}:P{r}", f"{{=SUM(IF($A$1:$A$5>D{r},$A$1:$A$5,0))}}")
    w.write_array_formula("P5:P5", "{=$A$1:$A$5*2}")  # an array in one cell shows its top-left value


@pytest.mark.parametrize("texts", ["array", "dict"])
def test_every_function_matches_formulas(tmp_path, monkeypatch, texts):
    from sheetgpt.engine import store

    if texts == "dict":  # the store of texts that sheets larger than TEXT_ARRAY_CELLS get
        monkeypatch.setattr(store, "TEXT_ARRAY_CELLS", 0)
    path = _book(tmp_path / "f.xlsx", _functions)
    book = read_workbook(path)
    res = evaluate(book)
    assert mismatches(book, res, oracle_values(path)) == []
    assert res.errors["Block 0"][(6, 2)] == "#N/A"
    assert res.errors["Block 0"][(7, 2)] == "#DIV/0!"
    assert res.text["Block 0"][(9, 2)] == "apple-1.5"
    # D1:D11 = 5 4 3 2 1 (empty) 1 2 3 4 5: the first 3 is 3rd, the first 1 is 5th; empty is not 0
    assert res.numbers["Block 0"][28, 2] == 3 + 5 and res.errors["Block 0"][(29, 2)] == "#N/A"
    assert res.numbers["Block 0"][30, 2] == 1000 + 200 - 20 + 0.25 and res.errors["Block 0"][(31, 2)] == "#DIV/0!"
    assert res.numbers["Block 0"][0:5, 6].tolist() == [5, 3, 1, 7, 7]
    # A1:A5 = 1.5 -2 3.25 0 7; D1:D3 = 5 4 3: the sums of the values above each
    assert res.numbers["Block 0"][0:3, 15].tolist() == [7, 7, 10.25] and res.numbers["Block 0"][4, 15] == 3


def _transformerish(wb):
    """Sheets shaped like the real book: a weight tab, rows of activations, grouped formulas."""
    rng = np.random.default_rng(0)
    w = wb.add_worksheet("wte")
    W = rng.normal(size=(8, 6)).round(6)
    for r in range(8):
        for c in range(6):
            w.write_number(r, c, W[r, c])
    b = wb.add_worksheet("Block 0")
    b.write_column("A2", [3, 1, 7, 3])  # token ids
    for t in range(4):
        for c in range(6):
            b.write_formula(1 + t, 1 + c, f"=INDEX(wte!$A$1:$F$8,$A{t + 2}+1,{c + 1})")  # embedding
            b.write_formula(
                1 + t, 8 + c, f"=(B{t + 2}-AVERAGE($B{t + 2}:$G{t + 2}))/SQRT(_xlfn.VAR.P($B{t + 2}:$G{t + 2})+1E-05)"
            )
        for j in range(8):
            col = xlsxwriter.utility.xl_col_to_name(j)
            b.write_formula(
                1 + t,
                15 + j,
                f"=MMULT($I{t + 2}:$N{t + 2},TRANSPOSE(wte!{col}$1:{col}$1))"
                if False
                else f"=SUMPRODUCT($I{t + 2}:$N{t + 2},wte!$A{j + 1}:$F{j + 1})",
            )
        b.write_formula(1 + t, 24, f"=MATCH(MAX($P{t + 2}:$W{t + 2}),$P{t + 2}:$W{t + 2},0)-1")
        b.write_formula(
            1 + t,
            25,
            f"=EXP(P{t + 2}-MAX($P{t + 2}:$W{t + 2}))/SUM(_xlfn.EXP($P{t + 2}:$W{t + 2}-MAX($P{t + 2}:$W{t + 2})))"
            if False
            else f"=EXP(P{t + 2}-MAX($P{t + 2}:$W{t + 2}))",
        )
    b.write_formula("Y7", "=SUM(Y2:Y5)")
    b.write_formula("B7", "=SUM($B$2:B2)")  # running sums: range size varies per cell
    b.write_formula("C7", "=SUM($B$2:C3)")
    b.write_formula("D7", "=0.5*B7+TANH(C7/10)")


def test_quoted_sheet_with_doubled_quote(tmp_path):
    # `formulas` cannot resolve 'it''s'!A1 (it gives #REF!), so this one is checked by hand
    def fill(wb):
        wb.add_worksheet("it's").write_number("A1", 0.25)
        wb.add_worksheet("s").write_formula("A1", "='it''s'!A1*2")

    res = evaluate(read_workbook(_book(tmp_path / "q.xlsx", fill)))
    assert res.numbers["s"][0, 0] == 0.5


def test_transformer_shaped_book_matches_formulas(tmp_path):
    path = _book(tmp_path / "t.xlsx", _transformerish)
    book = read_workbook(path)
    res = evaluate(book)
    assert mismatches(book, res, oracle_values(path), rel=1e-11) == []
    assert res.groups <= 30 and res.formula_cells == 92  # cells share groups


def test_self_referencing_group_goes_row_by_row(tmp_path):
    def fill(wb):
        s = wb.add_worksheet("s")
        s.write_number("B4", 1)
        for r in range(5, 21):
            s.write_formula(f"B{r}", f"=B{r - 1}*2+1")

    path = _book(tmp_path / "c.xlsx", fill)
    res = evaluate(read_workbook(path))
    assert res.numbers["s"][19, 1] == 2.0**17 - 1


def test_one_formula_in_two_places_is_not_a_cycle(tmp_path):
    """``=LEN(left)`` in column D rows 1-3 and in column B rows 10-12 is one group; the running
    text in column C (reading its row above) lies between them. The group's cells are two
    rectangles, not one box that would seem to write column C and make a cycle."""

    def fill(wb):
        s = wb.add_worksheet("s")
        for r in range(1, 4):
            s.write_string(f"B{r}", "ab"[: r % 2 + 1])
            s.write_formula(f"C{r}", f"=B{r}" if r == 1 else f"=C{r - 1}&B{r}")
            s.write_formula(f"D{r}", f"=LEN(C{r})")
        for r in range(10, 13):
            s.write_formula(f"A{r}", f'=C{r - 9}&"!"')
            s.write_formula(f"B{r}", f"=LEN(A{r})")

    path = _book(tmp_path / "two.xlsx", fill)
    book = read_workbook(path)
    ev = Evaluator(book)
    units = ev.units()
    (len_unit,) = [u for u in units if u.key == "LEN(R[0]C[-1])"]
    assert sorted(len_unit.boxes) == [(0, 3, 2, 3), (9, 1, 11, 1)]
    cyclic = [[u.key for u in comp] for comp, is_cyclic in schedule.order(units) if is_cyclic]
    assert cyclic == [["R[-1]C[0]&R[0]C[-1]"]]  # only the running text reads itself
    res = evaluate(book)
    assert mismatches(book, res, oracle_values(path)) == []
    assert res.numbers["s"][2, 3] == 5 and res.numbers["s"][11, 1] == 6  # len("ab" "a" "ab"), plus "!"


def test_a_formula_over_blocks_that_read_each_other_in_turn_needs_no_cell_order(tmp_path, monkeypatch):
    """B1:B3 and B5:B7 hold one formula (A+1); A5:A7 reads B1:B3. As one group, B and A5:A7
    read each other; as one group per block they are a chain, evaluated a block at a time."""

    def fill(wb):
        s = wb.add_worksheet("s")
        for r in range(1, 4):
            s.write_number(f"A{r}", r / 3)
            s.write_formula(f"B{r}", f"=A{r}+1")
            s.write_formula(f"A{r + 4}", f"=B{r}*2")
            s.write_formula(f"B{r + 4}", f"=A{r + 4}+1")

    path = _book(tmp_path / "chain.xlsx", fill)
    book = read_workbook(path)
    ev = Evaluator(book)
    assert [cyclic for _, cyclic in schedule.order(ev.units())].count(True) == 1  # as whole groups: a cycle
    by_cell = []
    monkeypatch.setattr(Evaluator, "cell_level", lambda self, comp: by_cell.append(comp))
    res = evaluate(book)
    assert by_cell == []
    assert mismatches(book, res, oracle_values(path)) == []


def test_a_reference_above_the_first_row_is_ref_and_a_problem(tmp_path):
    def fill(wb):
        wb.add_worksheet("s").write_formula("A3", "=A1+1")

    ev = Evaluator(read_workbook(_book(tmp_path / "o.xlsx", fill)))
    ev.unit("s", "R[-2]C[0]+1", np.array([2, 3]), np.array([0, 0]), None)  # from A3 and A4: rows 1 and 2
    assert ev.problems == []
    assert ev.unit("s", "R[-2]C[0]+1", np.array([1, 2]), np.array([0, 0]), None).ast == Err("#REF!")  # from A2
    assert ev.unit("s", "SUM(R1C1:R[0]C[-3])", np.array([0]), np.array([2]), (0, 2, 0, 2)).ast == Err("#REF!")
    assert [p.text for p in ev.problems] == ["s!A2: reference off the sheet", "s!C1: reference off the sheet"]


def _problems(path) -> tuple[list[str], object]:
    values = evaluate(read_workbook(path))
    return [p.text for p in values.problems], values


def test_a_circular_reference_is_an_error_value_naming_its_cells(tmp_path):
    def fill(wb):
        s = wb.add_worksheet("Block 1")
        s.write_formula("A1", "=B1+1")
        s.write_formula("B1", "=C1+1")
        s.write_formula("C1", "=A1+1")
        s.write_formula("D1", "=1")
        s.write_formula("E1", "=A1*2")  # waits on the cycle
        s.write_formula("F1", "=D1+1")

    path = _book(tmp_path / "c.xlsx", fill)
    texts, values = _problems(path)
    assert len(texts) == 1 and re.fullmatch(r"'Block 1'!(A1|B1|C1): circular reference", texts[0])
    p = values.problems[0]
    assert sorted(zip(p.rows.tolist(), p.cols.tolist())) == [(0, 0), (0, 1), (0, 2)]
    assert [values.value("Block 1", c) for c in ("A1", "B1", "C1", "D1", "E1", "F1")] == ["#VALUE!"] * 3 + [
        1.0,
        "#VALUE!",
        2.0,
    ]
    with pytest.raises(WorkbookError, match=r"'Block 1'!(A1|B1|C1): circular reference"):
        evaluate(read_workbook(path), strict=True)


def test_an_unsupported_function_is_name_error_naming_its_cell(tmp_path):
    def fill(wb):
        s = wb.add_worksheet("Block 3")
        s.write_formula("F27", "=VLOOKUP(1,A1:B2,2,0)")
        s.write_formula("F28", "=F27")

    texts, values = _problems(_book(tmp_path / "u.xlsx", fill))
    assert texts == [
        "'Block 3'!F27: unsupported function VLOOKUP (the fast engine does not know it); "
        "check with --engine libreoffice"
    ]
    assert values.value("Block 3", "F27") == values.value("Block 3", "F28") == "#NAME?"


def test_missing_sheet_names_cell(tmp_path):
    def fill(wb):
        s = wb.add_worksheet("a")
        s.write_formula("B2", "=nosuch!A1+1")

    texts, values = _problems(_book(tmp_path / "m.xlsx", fill))
    assert texts == ["a!B2: reference to a sheet that does not exist: 'nosuch'"]
    assert values.value("a", "B2") == "#REF!"


def test_grouped_mmult_is_one_matrix_product(tmp_path):
    """50,000 cells of =MMULT($A5:$CV5, w!A$1:A$100) evaluate without N x k x k."""
    rng = np.random.default_rng(1)
    T, K, M = 500, 100, 100
    X = rng.normal(size=(T, K))
    Wt = rng.normal(size=(K, M))
    r, c = np.nonzero(np.ones((T, K)))
    xs = Sheet("x", (r.astype(np.int32), c.astype(np.int32), X.ravel()), dims=(T, K))
    r, c = np.nonzero(np.ones((K, M)))
    ws = Sheet("w", (r.astype(np.int32), c.astype(np.int32), Wt.ravel()), dims=(K, M))
    last = col_name(K - 1)
    out = Sheet("o", (np.zeros(0, np.int32),) * 2 + (np.zeros(0),), dims=(T, M))
    out.formulas = [
        (t, j, f"MMULT(x!$A{t + 1}:${last}{t + 1},w!{col_name(j)}$1:{col_name(j)}${K})", None)
        for t in range(T)
        for j in range(M)
    ]
    book = Book(["x", "w", "o"], {"x": xs, "w": ws, "o": out}, {})
    t0 = time.perf_counter()
    res = evaluate(book)
    dt = time.perf_counter() - t0
    np.testing.assert_allclose(res.numbers["o"], X @ Wt, rtol=1e-12, atol=1e-12)
    assert res.groups == 1
    print(f"grouped MMULT: {T * M / dt:,.0f} cells/s")


def test_defined_names_of_ranges_and_constants_on_both_scopes(tmp_path):
    data = [[1.0, 2.0, 4.0], [3.0, -1.0, 0.5]]

    def fill(wb):
        d = wb.add_worksheet("Data 1")
        for i, row in enumerate(data):
            d.write_row(i, 0, row)
        s, t = wb.add_worksheet("s"), wb.add_worksheet("t")
        wb.define_name("block.x", "='Data 1'!$A$1:$C$2")
        wb.define_name("half", "=0.5")
        wb.define_name("greeting", '="hi"')
        wb.define_name("twice", "=half*4")  # a name through a name
        wb.define_name("s!half", "=10")  # s's own: hides the book's on s
        wb.define_name("left", "='Data 1'!$A1")  # relative: the row moves with the cell
        s.write_formula("A1", "=SUM(block.x)")
        s.write_formula("A2", "=_xlfn.VAR.P(INDEX(block.x,1,0))")
        s.write_formula("A3", "=SUM(INDEX(block.x,0,3))")
        s.write_formula("A4", "=half")
        s.write_formula("A5", "=t!half")
        s.write_formula("A6", "=twice")
        s.write_formula("A7", '=greeting&"!"')
        s.write_formula("A8", "=ROWS(block.x)*COLUMNS(block.x)")
        t.write_formula("A1", "=half")
        t.write_formula("A2", "=left")  # at row 2: 'Data 1'!A2
        t.write_formula("A3", "=INDEX(block.x,3,0)")
        t.write_formula("A4", "=IFERROR(nosuch,7)")

    values = evaluate(read_workbook(_book(tmp_path / "n.xlsx", fill)))
    row1 = data[0]
    mean = sum(row1) / 3
    got = [values.value("s", f"A{i}") for i in range(1, 9)]
    assert got == [
        math.fsum(sum(data, [])),
        pytest.approx(sum((x - mean) ** 2 for x in row1) / 3, rel=1e-15),
        4.5,
        10.0,
        0.5,
        2.0,
        "hi!",
        6.0,
    ]
    assert [values.value("t", f"A{i}") for i in range(1, 5)] == [0.5, 3.0, "#REF!", 7.0]
    assert [p.text for p in values.problems] == ["t!A4: unknown name 'nosuch' (the book defines no such name)"]


def test_whole_columns_and_rows_read_only_what_the_sheet_holds(tmp_path):
    def fill(wb):
        d = wb.add_worksheet("Embed")
        d.write_column("A1", [1, 2, 3])
        d.write_column("C1", [10, 20])
        s = wb.add_worksheet("s")
        s.write_formula("A1", "=SUM(Embed!A:A)")
        s.write_formula("A2", "=SUM(Embed!A:XFD)")
        s.write_formula("A3", "=SUM(Embed!1:1048576)")
        s.write_formula("A4", "=SUM(Embed!$2:$2)")
        s.write_formula("A5", "=COUNT(Embed!B:C)+ROWS(Embed!A:A)+COLUMNS(Embed!1:2)")
        s.write_formula("A6", "=MATCH(3,Embed!A:A,0)")
        s.write_formula("A7", "=_xlfn.VAR.P(Embed!$A:$A)")
        s.write_formula("A8", '=SUM(Embed!A:A)&"A:A"')

    values = evaluate(read_workbook(_book(tmp_path / "w.xlsx", fill)))
    assert [values.value("s", f"A{i}") for i in range(1, 9)] == [
        6.0,
        36.0,
        36.0,
        22.0,
        2.0 + 1048576 + 16384,
        3.0,
        pytest.approx(2 / 3, rel=1e-15),
        "6A:A",
    ]
    assert values.problems == []


def test_true_is_skipped_by_sum_over_a_range_and_counts_in_arithmetic(tmp_path):
    """Excel: SUM/AVERAGE/COUNT over a range skip a TRUE cell; TRUE typed as an argument, or in +, is 1."""

    def fill(wb):
        s = wb.add_worksheet("s")
        s.write_formula("A1", "=TRUE()")
        s.write_number("A2", 2)
        s.write_formula("B1", "=SUM(A1:A2)")
        s.write_formula("B2", "=A1+A2")
        s.write_formula("B3", "=SUM(TRUE(),A2)")
        s.write_formula("B4", "=COUNT(A1:A2)")
        s.write_formula("B5", "=AVERAGE(A1:A2)")

    values = evaluate(read_workbook(_book(tmp_path / "t.xlsx", fill)))
    assert [values.value("s", f"B{i}") for i in range(1, 6)] == [2.0, 3.0, 3.0, 1.0, 2.0]


def test_cells_reading_one_large_absolute_range_share_a_block_node(tmp_path, monkeypatch):
    """A generation-shaped cycle: row 1 holds tokens, C2:F301 one shared formula of 300 "logits" per
    token, and five cells read each column whole ($C$2:$C$301: its 4 largest, and the next token
    where the second largest is). In the cell order that range is one block node (300 edges in, one
    per reader), not 300 edges per reader; the values are those of the plain edges and of Python."""

    def fill(wb):
        s = wb.add_worksheet("s")
        s.write_number("C1", 3)
        for t in range(4):
            col = col_name(2 + t)
            for r in range(2, 302):
                s.write_formula(f"{col}{r}", f"=MOD(ROW()*({col}$1+1)*7919,1009)")
            if t < 3:  # the 4 largest below it (4 readers), and the next token: where the second is (a 5th)
                rng = f"${col}$2:${col}$301"
                for r in range(303, 307):
                    s.write_formula(f"{col}{r}", f"=LARGE({rng},ROW()-302)")
                s.write_formula(f"{col_name(3 + t)}1", f"=MATCH({col}304,{rng},0)")

    path = _book(tmp_path / "gen.xlsx", fill)
    tokens = [3]
    for _ in range(3):
        logits = [r * (tokens[-1] + 1) * 7919 % 1009 for r in range(2, 302)]
        tokens.append(logits.index(sorted(logits)[-2]) + 1)
    edges = []
    real = schedule.cell_edges

    def counted(*args):
        out = real(*args)
        edges.append(len(out[0]))
        return out

    monkeypatch.setattr(schedule, "cell_edges", counted)
    shared = evaluate(read_workbook(path))
    monkeypatch.setattr(schedule, "SHARED_BLOCK", 10**9)
    plain = evaluate(read_workbook(path))
    assert shared.numbers["s"][0, 2:6].tolist() == plain.numbers["s"][0, 2:6].tolist() == tokens
    assert np.array_equal(shared.numbers["s"], plain.numbers["s"], equal_nan=True)
    # 900 logits reading their token; then per block 300 + 5 readers (+ the token reading the second), or 5 x 300
    assert edges[0] == 900 + 3 * (300 + 5 + 1) and edges[1] == 900 + 3 * (5 * 300 + 1)


def test_a_cell_reading_a_large_range_that_holds_it_is_a_circular_reference(tmp_path):
    def fill(wb):
        s = wb.add_worksheet("s")
        for r in range(2, 301):
            s.write_number(f"A{r}", r)
        s.write_formula("A1", "=SUM($A$1:$A$300)")

    texts, values = _problems(_book(tmp_path / "self.xlsx", fill))
    assert texts == ["s!A1: circular reference"]
    assert values.value("s", "A1") == "#VALUE!"
