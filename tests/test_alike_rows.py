"""The reader's alike-rows path (sheetgpt/engine/alike_rows.py): weight tabs as the writer lays them
out read the same numbers as by the fast path, and any row that differs from its template (a byte,
a row number, a number of another grammar) is read, or refused, exactly as before."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from sheetgpt.book.xlsx.number_text import rows_xml
from sheetgpt.engine import alike_rows, sheet_parser, zip_limits
from sheetgpt.engine.reader import read_workbook
from sheetgpt.errors import WorkbookError
from sheetgpt.weight_text import stored_values

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
ROWS, COLS = 230, 80  # row numbers of 1, 2 and 3 digits; columns of 1 and 2 letters


def _weights(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((ROWS, COLS)) * 0.15).astype(np.float32)
    w[3, :6] = [0.0, -0.0, 1.0, -1e-9, 1e20, 1e-14]  # zero, and texts of other forms (padded repr)
    return stored_values(w)


def _book(path, rows: bytes) -> None:
    sheet = f'<?xml version="1.0"?><worksheet xmlns="{MAIN}"><sheetData>'.encode() + rows + b"</sheetData></worksheet>"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="xml" ContentType="application/xml"/></Types>',
        )
        z.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>'
            '<sheet name="w" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        )
        z.writestr("xl/worksheets/sheet1.xml", sheet)


def _read(path, alike: bool, monkeypatch):
    """What the reader makes of the book: (dims, grid of its numbers) or the error's text."""
    with monkeypatch.context() as m:
        if not alike:
            m.setattr(sheet_parser._SheetParser, "alike", lambda self, buf: (0, False))
        try:
            sheet = read_workbook(path).sheets["w"]
        except WorkbookError as e:
            return str(e)
    grid = np.full(sheet.dims, np.nan)
    r, c, v = sheet.numbers
    grid[r, c] = v
    return sheet.dims, grid


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a[0] == b[0] and np.array_equal(a[1], b[1], equal_nan=True) and (np.signbit(a[1]) == np.signbit(b[1])).all()


@pytest.fixture(params=[1 << 20, 20_000], ids=["one chunk", "many chunks"])
def chunk(request, monkeypatch):
    monkeypatch.setattr(zip_limits, "CHUNK", request.param)
    return request.param


def test_a_weight_tab_reads_its_numbers_through_alike_rows(tmp_path, monkeypatch, chunk):
    want = _weights()
    path = tmp_path / "w.xlsx"
    _book(path, rows_xml(want, 0))
    read = []
    real = alike_rows.read_run
    monkeypatch.setattr(alike_rows, "read_run", lambda *a: read.append(real(*a)[0]) or real(*a))
    dims, grid = _read(path, True, monkeypatch)
    assert dims == (ROWS, COLS) and np.array_equal(grid, want) and (np.signbit(grid) == np.signbit(want)).all()
    assert sum(read) >= ROWS - 30, read  # most rows came from templates (a few are templates themselves)
    assert _same((dims, grid), _read(path, False, monkeypatch))


MUTATIONS = {  # (what to find in row 150's XML, what to put instead: as many bytes)
    "another tag": (b"<v>", b"<w>"),
    "a typed cell": (b'" ><v>', b'"t="s"'),
    "an address of the row before": (b'r="B150"', b'r="B149"'),
    "an address of the row after": (b'r="C150"', b'r="C151"'),
    "a row tag of another row": (b'r="150"', b'r="152"'),  # the cells' addresses decide: the same numbers
    "a number with a dot": (None, b"-0000001.5e-05"),
    "a positive exponent": (None, b"0123456789E+05"),
    "an exponent beyond 22": (None, b"0123456789E-30"),
    "a leading space": (None, b" 123456789E-05"),
    "not a number": (None, b"0nan0000000000"),
    "an infinite number": (None, b"00000000000inf"),
    "a digit that is not": (None, b"01234:6789E-05"),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_a_row_unlike_its_template_is_read_as_before(tmp_path, monkeypatch, chunk, mutation):
    xml = rows_xml(_weights(), 0)
    start = xml.index(b'<row    r="150">')
    end = xml.index(b"</row  >", start)
    row = xml[start:end]
    old, new = MUTATIONS[mutation]
    if old is None:  # the 7th number's text
        at = [i for i in range(len(row)) if row.startswith(b"<v>", i)][6] + 3
        old = row[at : at + len(new)]
    assert len(old) == len(new) and old in row
    path = tmp_path / "w.xlsx"
    _book(path, xml[:start] + row.replace(old, new, 1) + xml[end:])
    before = _read(path, False, monkeypatch)
    assert _same(_read(path, True, monkeypatch), before)
    if mutation != "a row tag of another row":
        assert not _same(before, ((ROWS, COLS), _weights()))  # the mutation changed what the book says


def test_rows_of_variable_width_numbers_are_read_as_before(tmp_path, monkeypatch, chunk):
    """Rows as another writer writes them (numbers of any width): no template applies."""
    want = _weights()
    rows = b"".join(
        b'<row r="%d">' % (i + 1)
        + b"".join(b'<c r="%s%d"><v>%r</v></c>' % (_col(c).encode(), i + 1, float(v)) for c, v in enumerate(want[i]))
        + b"</row>"
        for i in range(ROWS)
    )
    path = tmp_path / "w.xlsx"
    _book(path, rows)
    got = _read(path, True, monkeypatch)
    assert _same(got, ((ROWS, COLS), want)) and _same(got, _read(path, False, monkeypatch))


def _col(c: int) -> str:
    from sheetgpt import a1

    return a1.col_name(c)


def test_strict_numbers_equal_pythons_float():
    texts = [b"0123456789E-05", b"-123456789E-09", b"-000000000E-22", b"0999999999E-00", b"0100000000E-22"]
    x = np.frombuffer(b"".join(texts), np.uint8).reshape(len(texts), 1, 14).transpose(1, 2, 0)
    values, ok = alike_rows._strict_numbers(x)
    assert ok.all()
    want = np.array([float(t) for t in texts])
    assert np.array_equal(values[0], want) and (np.signbit(values[0]) == np.signbit(want)).all()
