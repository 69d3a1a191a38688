"""The xlsx backend (sheetgpt/book/xlsx): number texts read back exactly, zips are valid, shared formulas expand to
each region's own formulas."""

from __future__ import annotations

import io
import re
import zipfile
import zlib

import numpy as np
import openpyxl
import pytest
import xlsxwriter
from proved import assert_proves_every_region

from sheetgpt import a1
from sheetgpt.book.xlsx import deflate, number_text, shared, sheet_xml, worksheet
from sheetgpt.book.xlsx.assemble import assemble
from sheetgpt.errors import SheetGPTError
from sheetgpt.weight_text import compose, decompose, stored_values


def _awkward_weights(n: int = 20000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n).astype(np.float32) * np.float32(0.15)
    special = [
        0,
        -0.0,
        1,
        -1,
        10,
        100,
        1e-9,
        -1e-9,
        1e20,
        -3e-38,
        3.4e38,
        1e-45,
        0.001,
        123456789,
        1e8,
        1e9,
        0.1,
        0.5,
        9.99999e-5,
        1e-14,
        1e-15,
        2.5e-16,
        7e-30,
    ]
    w[: len(special)] = np.array(special, dtype=np.float32)
    w[len(special) : 2000] *= np.float32(10.0) ** rng.integers(-30, 30, 2000 - len(special)).astype(np.float32)
    return w


def _book_with(values: np.ndarray) -> bytes:
    """A one-sheet book whose sheet is written by the backend (through assemble, as the writer does)."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        skel, out = os.path.join(d, "s.xlsx"), os.path.join(d, "o.xlsx")
        wb = xlsxwriter.Workbook(skel)
        wb.add_worksheet("w")
        wb.close()
        assemble(skel, out, {"xl/worksheets/sheet1.xml": ("w", values)}, processes=2)
        return open(out, "rb").read()


def test_mantissa_exponent_is_exact_where_it_claims():
    x = stored_values(_awkward_weights())
    m, k, ok = number_text.mantissa_exponent(x)
    assert ok.mean() > 0.9
    assert np.array_equal(m[ok] / 10.0 ** k[ok], np.abs(x[ok]))
    texts = [b"%dE-%d" % (a, b) for a, b in zip(m[ok][:3000].tolist(), k[ok][:3000].tolist())]
    assert [float(t) for t in texts] == np.abs(x[ok][:3000]).tolist()


def test_every_cell_text_reads_back_as_compose_of_decompose():
    w = _awkward_weights()
    want = compose(*decompose(w))
    plain = number_text.number_cells(want[2000:])  # ordinary weights: the fixed-width fast path
    assert plain is not None and len(plain) == (w.size - 2000) * number_text.CELL_BYTES
    xml = number_text.rows_xml(want[None, :], 0)  # all of them, awkward ones included
    got = np.array([float(t.split(b"<")[0]) for t in xml.split(b"<v>")[1:]])
    assert np.array_equal(got, want)
    assert np.array_equal(got.astype(np.float32)[np.isfinite(w)], w[np.isfinite(w)])  # float32 round trip


def test_values_longer_than_the_fixed_width_fall_back_to_repr():
    x = np.array([[0.1 + 0.2, -1.2345678901234567e-100, 5e-324]])  # not 9-digit decimals
    xml = number_text.rows_xml(x, 0)
    texts = xml.split(b"<v>")[1:]
    assert [float(t.split(b"<")[0]) for t in texts] == x.ravel().tolist()


@pytest.fixture
def fast_sheet(tmp_path):
    """(path, want): a book whose sheet "w" holds awkward float32 weights as written by the fast sheet writer."""
    want = stored_values(_awkward_weights(6000).reshape(60, 100))
    path = tmp_path / "b.xlsx"
    path.write_bytes(_book_with(want))
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
    return path, want


def test_our_reader_and_openpyxl_read_the_fast_sheet_exactly(fast_sheet):
    from sheetgpt.engine.reader import read_workbook

    path, want = fast_sheet
    ws = openpyxl.load_workbook(path, read_only=True)["w"]
    got = np.array([[0.0 if v is None else v for v in row] for row in ws.iter_rows(values_only=True)], dtype=float)
    assert np.array_equal(got, want)
    sheet = read_workbook(path, sheets=["w"]).sheets["w"]
    rows_, cols_, vals = sheet.numbers
    got = np.full((60, 100), np.nan)
    got[rows_, cols_] = vals
    assert np.array_equal(got, want)


def test_calamine_reads_the_fast_sheet_exactly(fast_sheet):
    """Optional: python_calamine (Rust's calamine) is not a dependency."""
    calamine = pytest.importorskip("python_calamine")
    path, want = fast_sheet
    rows = calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_name("w").to_python()
    assert np.array_equal(np.array(rows, dtype=float), want)


def test_crc32_combine_matches_zlib():
    rng = np.random.default_rng(1)
    a, b = rng.bytes(1000), rng.bytes(12345)
    assert deflate.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert deflate.crc32_combine(zlib.crc32(a), zlib.crc32(b""), 0) == zlib.crc32(a)


def test_pieces_join_into_one_stream_across_many_chunks():
    values = stored_values(_awkward_weights(30000)).reshape(300, 100)
    skel = io.BytesIO()
    wb = xlsxwriter.Workbook(skel, {"in_memory": True})
    wb.add_worksheet("w")
    wb.close()
    prefix, suffix = sheet_xml.sheet_parts(zipfile.ZipFile(skel).read("xl/worksheets/sheet1.xml"), 300, 100)
    tasks = deflate.plan("m", "w", (300, 100), prefix, suffix, cells_per_piece=1000)
    assert len(tasks) == 30
    pieces = list(deflate.deflate_all(tasks, {"w": values}, processes=2))
    xml = zlib.decompress(b"".join(p.data for p in pieces), -15)
    assert xml == prefix + b"".join(number_text.rows_xml(values[t.r0 : t.r1], t.r0) for t in tasks) + suffix
    assert b'<dimension ref="A1:CV300"/>' in xml


def test_deflate_workers_stop_at_once_when_the_build_stops_or_a_worker_dies():
    """An interrupted build closes the pieces' iterator: every worker is gone at once. A worker that dies
    (killed as Pool.terminate() killed them) cannot leave a lock held that the parent waits for: the
    parent's cleanup still returns at once."""
    import multiprocessing
    import os
    import signal
    import time

    values = stored_values(_awkward_weights(30000)).reshape(300, 100)
    tasks = deflate.plan("m", "w", (300, 100), b"<x>", b"</x>", cells_per_piece=1000)
    for kill_one in (False, True):
        pieces = deflate.deflate_all(tasks, {"w": values}, processes=2)
        assert next(pieces).member == "m"
        workers = multiprocessing.active_children()
        assert len(workers) == 2
        if kill_one:
            os.kill(workers[0].pid, signal.SIGKILL)
        started = time.perf_counter()
        pieces.close()  # what an exception in the caller does to the generator
        assert time.perf_counter() - started < 5
        assert multiprocessing.active_children() == [] and all(w.exitcode is not None for w in workers)
    pieces = deflate.deflate_all(tasks, {"w": values}, processes=2)  # a worker dies while the parent waits
    next(pieces)
    for w in multiprocessing.active_children():
        os.kill(w.pid, signal.SIGKILL)
    with pytest.raises(SheetGPTError, match="died"):
        list(pieces)
    assert multiprocessing.active_children() == []


def test_a_built_book_is_xlsxwriters_book_plus_exact_weight_tabs(tmp_path, model_dir, monkeypatch):
    """Every member but the weight tabs and the compute tabs (which gain their formula cells) is
    xlsxwriter's, byte for byte; the weight tabs read back (openpyxl) as exactly the stored values
    the reference used."""
    import shutil

    from sheetgpt.book import writer
    from sheetgpt.checkpoint import load_model
    from sheetgpt.tokenizer import Tokenizer

    d = model_dir("odd")
    model, tok = load_model(d), Tokenizer.from_dir(d)
    real = writer.assemble
    seen = {}

    def keep_skeleton(skeleton, out, weights, **kw):
        shutil.copy(skeleton, tmp_path / "skeleton.xlsx")
        seen.update(weights)
        merged.update(kw.get("formulas") or {})
        return real(skeleton, out, weights, **kw)

    merged = {}

    monkeypatch.setattr(writer, "assemble", keep_skeleton)
    path = writer.build_workbook(model, tok, "the cat sat", tmp_path / "fast.xlsx").path
    with zipfile.ZipFile(path) as fast, zipfile.ZipFile(tmp_path / "skeleton.xlsx") as skel:
        assert fast.testzip() is None
        assert fast.namelist() == skel.namelist()
        for name in skel.namelist():
            if name not in seen and name not in merged:
                assert fast.read(name) == skel.read(name), name
    assert len(seen) == len(model.flat)
    assert {tab for tab, _ in merged.values()} >= {"Embed", "Block 0", "Block 1", "Final norm", "Logits", "Logit lens"}
    book = openpyxl.load_workbook(path, read_only=True)
    for tab, _values in seen.values():
        got = np.array([list(r) for r in book[tab].iter_rows(values_only=True)], dtype=float)
        assert np.array_equal(got, stored_values(model.flat[tab]).reshape(got.shape)), tab


# ---- compute tabs: shared formulas ---------------------------------------------------------------


def _written(path) -> dict:
    """(tab, row, col) -> (formula text without '=' or an array's (ref, text), number format) of every
    formula cell, 0-based, as openpyxl reads it (it expands shared formulas into each cell's own text)."""
    book = openpyxl.load_workbook(path)
    out = {}
    for ws in book.worksheets:
        for row in ws.iter_rows():
            for c in row:
                v = c.value
                if hasattr(v, "ref"):  # a CSE array formula: its range and text
                    out[(ws.title, c.row - 1, c.column - 1)] = ((v.ref, v.text.removeprefix("=")), c.number_format)
                elif isinstance(v, str) and v.startswith("="):
                    out[(ws.title, c.row - 1, c.column - 1)] = (v[1:], c.number_format)
    return out


@pytest.mark.parametrize("shape", ["micro", "one-head", "odd"])
@pytest.mark.slow
def test_every_region_is_written_as_its_own_formulas(tmp_path, model_dir, monkeypatch, shape):
    """Each region's cells, read back (shared formulas expanded), hold exactly region.formula(i, j), or
    the region's CSE arrays, in the region's number format; the BPE tab's cells hold BpeSheet's formulas."""
    from sheetgpt.book import writer
    from sheetgpt.book.tabs import bpe
    from sheetgpt.checkpoint import load_model
    from sheetgpt.tokenizer import Tokenizer

    d = model_dir(shape)
    model, tok = load_model(d), Tokenizer.from_dir(d)
    monkeypatch.setattr(writer, "SHARED_VERIFY", "all")
    result = writer.build_workbook(  # micro: with the BPE tab
        model, tok, "the cat sat on", tmp_path / "b.xlsx", typed_prompt=shape == "micro"
    )
    got, layout = _written(result.path), result.layout
    n_cells = 0
    for region in layout.regions.values():
        # (the Prompt tab's id cells are in General, not the region's "0": so the books were recorded)
        number_format = "General" if region.name == "prompt.ids" else region.number_format
        for i in range(region.rows) if region.formula else ():
            for j in region.columns():
                cell = (region.tab, region.top + i, region.left + j)
                assert got[cell] == (region.formula(i, j), number_format), (region.name, cell)
                n_cells += 1
        for r0, c0, r1, c1, text in region.arrays:
            ref = a1.span(r0, c0, r1, c1, (False, False), (False, False)) if (r0, c0) != (r1, c1) else a1.cell(r0, c0)
            assert got[(region.tab, r0, c0)] == ((ref, text), number_format), region.name
            n_cells += 1
    assert n_cells > (1000 if shape != "micro" else 500)
    if shape == "micro":
        formulas = [c for c in bpe.BpeSheet(layout).cells() if c.kind == "formula"]
        for c in formulas:
            assert got[(bpe.NAME, c.row, c.col)] == (c.content, c.fmt or "General"), (c.row, c.col)
        assert len(formulas) > 1000
    with zipfile.ZipFile(result.path) as z:  # and they were written as shared formulas
        names = re.findall(r'<sheet name="([^"]+)"', z.read("xl/workbook.xml").decode())
        sheet = lambda name: z.read(f"xl/worksheets/sheet{names.index(name) + 1}.xml")  # noqa: E731
        assert b't="shared"' in sheet("Block 0") and b'<f t="array"' in sheet("Block 0")
        if shape == "micro":
            assert sheet(bpe.NAME).count(b'<f t="shared" ref=') > 100


@pytest.mark.parametrize("engine", ["fast", pytest.param("libreoffice", marks=pytest.mark.libreoffice)])
@pytest.mark.parametrize("shape", ["micro", "one-head"])
def test_shared_formula_book_passes_check(book, shape, engine):
    from sheetgpt.check import check_book

    result = book(shape, "the cat sat")
    assert_proves_every_region(check_book(result.path, engine=engine), result.layout)


def test_shared_groups_split_where_shifting_does_not_give_the_cell_its_text():
    def same(i, j):  # one formula up to relative references
        return f"{a1.col_name(2 + j)}{i + 5}*$A$1+SUM($C{i + 5}:$F{i + 5})"

    assert shared.shared_groups(same, (0, 4, 0, 3), 4, 2, "all") == [(0, 4, 0, 3, same(0, 0), True)]

    def per_row(i, j):  # a constant that changes from row to row
        return f"$C{i + 5}+{i}"

    groups = shared.shared_groups(per_row, (0, 3, 0, 4), 4, 2, "all")
    assert groups == [(i, i + 1, 0, 4, per_row(i, 0), True) for i in range(3)]

    def per_pair(i, j):  # a constant that changes within a row: a group per run of columns
        return f"$C{i + 5}*{j // 2}"

    groups = shared.shared_groups(per_pair, (0, 2, 0, 4), 4, 2, "all")
    assert groups == [(0, 2, 0, 2, per_pair(0, 0), True), (0, 2, 2, 4, per_pair(0, 2), True)]

    def first_row_and_one_cell(i, j):  # a first row of its own, and one odd cell (groups of one cell are plain)
        return "$A$1" if i == 0 else "$B$1" if (i, j) == (2, 1) else f"$C{i + 4}"

    groups = shared.shared_groups(first_row_and_one_cell, (0, 4, 0, 3), 4, 2, "all")
    f = first_row_and_one_cell
    assert groups == [
        (0, 1, 0, 3, f(0, 0), True),
        (1, 2, 0, 3, f(1, 0), True),
        (2, 3, 0, 1, f(2, 0), False),
        (2, 3, 1, 2, f(2, 1), False),
        (2, 3, 2, 3, f(2, 2), False),
        (3, 4, 0, 3, f(3, 0), True),
    ]


def test_sampled_verification_sees_a_cell_that_differs_on_an_edge_or_the_diagonal():
    rows, cols = 40, 50
    for odd in [(0, 7), (39, 3), (12, 0), (5, 49), (20, 25)]:

        def formula(i, j, odd=odd):
            return "$A$1" if (i, j) == odd else f"C{i + 1}"

        groups = shared.shared_groups(formula, (0, rows, 0, cols), 0, 2, "sample")
        assert len(groups) > 1, odd
        assert all(
            formula(i, j) == shifted(g, i, j)
            for g in groups
            for i in range(g[0], g[1])
            for j in range(g[2], g[3])
            if g[5]
        ), odd


def shifted(group, i, j):
    from sheetgpt.engine.r1c1 import shift_formula

    return shift_formula(group[4], i - group[0], j - group[2])


def test_cells_merge_into_the_skeletons_rows_in_column_order():
    skel = io.BytesIO()
    wb = xlsxwriter.Workbook(skel, {"in_memory": True})
    ws = wb.add_worksheet("s")
    ws.write_string(0, 0, "title")
    for r in (2, 3):
        ws.write_number(r, 0, r)
        ws.write_string(r, 1, f"label {r}")
        ws.write_string(r, 5, "right")  # right of our cells
    wb.close()
    xml = zipfile.ZipFile(skel).read("xl/worksheets/sheet1.xml")
    values = np.array([[1.5, np.nan, 0.25], [2.0, 3.0, -1e-300], [4.0, 5.0, 6.0]])
    block = shared.FormulaBlock(2, 2, values, 0, [(0, 3, 0, 3)], lambda i, j: f'IF(A{i + 3}>0,"<&>",{i})')
    out = sheet_xml.formula_sheet_xml(xml, [block], "all")
    path = io.BytesIO()
    with zipfile.ZipFile(skel) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, out if name == "xl/worksheets/sheet1.xml" else src.read(name))
    assert b'<dimension ref="A1:F5"/>' in out
    book = openpyxl.load_workbook(path)
    ws = book["s"]
    assert ws["A1"].value == "title" and ws["B3"].value == "label 2" and ws["F4"].value == "right"
    for i in range(3):
        assert [ws.cell(3 + i, 3 + j).value for j in range(3)] == [f'=IF(A{i + 3}>0,"<&>",{i})'] * 3
    assert ws["C5"].value == '=IF(A5>0,"<&>",2)' and ws["B5"].value is None
    cached = openpyxl.load_workbook(path, data_only=True)["s"]
    assert cached["C3"].value == 1.5 and cached["E4"].value == -1e-300 and cached["D3"].value is None


def test_formula_sheet_writes_what_xlsxwriters_worksheet_writes():
    """FormulaSheet's write_formula and sparse row writer give byte-identical sheets, but for an empty
    cached text, which it types t="str" as Excel does (xlsxwriter leaves it untyped)."""

    def sheet_xml(worksheet_class):
        buf = io.BytesIO()
        wb = xlsxwriter.Workbook(buf, {"in_memory": True})
        ws = wb.add_worksheet("s", worksheet_class=worksheet_class)
        fmt = wb.add_format({"num_format": "0.00"})
        ws.set_row(7, 30)
        ws.set_row(40, None, fmt)
        ws.write_comment(9, 700, "a note")
        for r in range(0, 60, 3):
            ws.write_number(r, 0, r)
            ws.write_formula(r, 1, f"=A{r + 1}*2", fmt, r * 2.0)
            ws.write_formula(r, 300 + r, "=SUM(A1:A3)", None, "")
            ws.write_formula(r, 2, "=_xlfn.VAR.P(A1:A3)")
        ws.write_formula(61, 1, "=FILTER(A1:A3,A1:A3>0)")  # a dynamic array function: xlsxwriter's path
        ws.write_formula(62, 1, "{=SUM(A1:A3)}")
        ws.write_formula("D64", "=A1")
        wb.close()
        return zipfile.ZipFile(buf).read("xl/worksheets/sheet1.xml")

    ours, theirs = sheet_xml(worksheet.FormulaSheet), sheet_xml(None)
    typed = re.sub(rb'(<c r="[A-Z]+[0-9]+")(><f>[^<]*</f><v></v></c>)', rb'\1 t="str"\2', theirs)
    assert typed.count(b't="str"') == 20  # the 20 formulas written with value ""
    assert ours == typed


def test_every_cell_of_a_gpt2_size_weight_tab_has_its_address():
    # wte at GPT-2 small's size (38.6 M cells) was once written without addresses, which IronCalc
    # refuses and Gnumeric reads as empty; its last piece, deflated as the book's pieces are
    values = np.broadcast_to(np.float64(-0.0123456789), (50257, 768))
    last = deflate.plan("m", "wte", values.shape, b"", b"", cells_per_piece=1 << 19)[-1]
    deflate._ARRAYS["wte"] = values
    try:
        piece = deflate.deflate_piece(last)
    finally:
        del deflate._ARRAYS["wte"]
    xml = zlib.decompress(piece.data, -15)
    cells = re.findall(rb"<c\b[^>]*>", xml)
    assert len(cells) == (last.r1 - last.r0) * 768
    assert all(b' r="' in c for c in cells)
    assert cells[-1] == b'<c   r="ACN50257" >'


def test_a_blank_result_is_cached_as_empty_text_and_an_uncomputed_one_has_no_value():
    # NaN: the formula gives "" (a masked attention score), written as Excel writes it; None: no
    # cached value (the backend allows it; sheetgpt's own books cache every formula cell)
    f = lambda i, j: f'IF($A{i + 1}>0,"",1)'  # noqa: E731
    blank = shared.FormulaBlock(0, 1, np.array([[np.nan, 2.5]]), 3, [(0, 1, 0, 2)], f)
    runs, _ = shared.block_runs(blank, "all", 0)
    xml = "".join(r[2] for r in runs)
    assert '<c r="B1" s="3" t="str"><f t="shared" ref="B1:C1" si="0">IF($A1&gt;0,"",1)</f><v></v></c>' in xml
    assert '<c r="C1" s="3"><f t="shared" si="0"/><v>2.5</v></c>' in xml
    uncomputed = shared.FormulaBlock(0, 1, np.array([[None, "x"]], dtype=object), 3, [(0, 1, 0, 2)], f)
    xml = "".join(r[2] for r in shared.block_runs(uncomputed, "all", 0)[0])
    assert '<c r="B1" s="3"><f t="shared" ref="B1:C1" si="0">IF($A1&gt;0,"",1)</f></c>' in xml
    assert '<c r="C1" s="3" t="str"><f t="shared" si="0"/><v>x</v></c>' in xml
