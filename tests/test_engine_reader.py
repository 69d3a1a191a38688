"""The reader (sheetgpt.engine.reader): hand-built parts (shared formulas, cells without r=) and hostile files."""

from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest
import xlsxwriter

from sheetgpt import a1
from sheetgpt.engine import pool, zip_limits
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.errors import WorkbookError

CT = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Override PartName="/xl/workbook.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>'
)
WB = (
    b'<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    b'<sheets><sheet name="Block 0" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
RELS = (
    b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    b'Target="worksheets/sheet1.xml"/>'
    b'<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" '
    b'Target="sharedStrings.xml"/></Relationships>'
)
SST = b'<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>hello</t></si><si><r><t>a&amp;</t></r><r><t>b</t></r></si></sst>'


def _xlsx(path, sheet_xml: bytes, *, wb=WB, extra=None, drop=()):
    parts = {
        "[Content_Types].xml": CT,
        "xl/workbook.xml": wb,
        "xl/_rels/workbook.xml.rels": RELS,
        "xl/sharedStrings.xml": SST,
        "xl/worksheets/sheet1.xml": sheet_xml,
    }
    parts.update(extra or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in parts.items():
            if k not in drop:
                z.writestr(k, v)
    return path


def _sheet(rows: str) -> bytes:
    return (
        b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
        + rows.encode()
        + b"</sheetData></worksheet>"
    )


def test_shared_formulas_no_r_and_all_cell_types(tmp_path):
    rows = (
        '<row r="1"><c><v>1.5</v></c><c><v>2</v></c><c t="s"><v>0</v></c><c t="inlineStr"><is><t>x&lt;y</t></is></c>'
        '<c t="b"><v>1</v></c><c t="e"><v>#N/A</v></c></row>'
        '<row><c s="1" r="A2"><v>1E-05</v></c><c t="s"><v>1</v></c></row>'
        '<row r="4"><c r="B4"><f t="shared" ref="B4:B6" si="0">A1*2+$A$1</f><v>999</v></c></row>'
        '<row r="5"><c r="B5"><f t="shared" si="0"/><v>999</v></c><c t="str"><f>C1&amp;"!"</f><v>cached</v></c></row>'
        '<row r="6"><c r="B6"><f t="shared" si="0"/></c></row>'
        '<row r="8"><c r="A8"><f t="array" ref="A8:B8">A1:B1*10</f></c></row>'
    )
    path = _xlsx(tmp_path / "h.xlsx", _sheet(rows))
    book = read_workbook(path)
    sh = book.sheets["Block 0"]
    assert book.sheet_names == ["Block 0"]
    nums = {(int(r), int(c)): v for r, c, v in zip(*sh.numbers)}
    assert nums == {(0, 0): 1.5, (0, 1): 2.0, (1, 0): 1e-05}
    assert sh.strings == {(0, 2): "hello", (0, 3): "x<y", (1, 1): "a&b"}
    assert sh.booleans == {(0, 4): True} and sh.errors == {(0, 5): "#N/A"}
    f = {(r, c): (t, a) for r, c, t, a in sh.formulas}
    assert f[(3, 1)] == ("A1*2+$A$1", None)
    assert f[(4, 1)] == ("A2*2+$A$1", None)
    assert f[(5, 1)] == ("A3*2+$A$1", None)
    assert f[(4, 2)] == ('C1&"!"', None)
    assert f[(7, 0)] == ("A1:B1*10", (7, 0, 7, 1))
    assert sh.cached[(4, 2)] == "cached"
    res = evaluate(book)
    v = res.numbers["Block 0"]
    assert v[3, 1] == 4.5 and v[4, 1] == 1.5 + 2e-05 and v[5, 1] == 1.5
    assert res.text["Block 0"][(4, 2)] == "hello!"
    assert list(v[7, :2]) == [15.0, 20.0]
    d = sh.dense()
    assert d.shape == sh.dims and d[0, 0] == 1.5 and np.isnan(d[0, 2])


def test_numeric_fast_path_matches_float(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 40)) * 10.0 ** rng.integers(-30, 30, size=(300, 40))
    path = tmp_path / "n.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("w")
    for r in range(300):
        ws.write_row(r, 0, x[r].tolist())
    wb.close()
    d = read_workbook(path).sheets["w"].dense()
    assert d.shape == (300, 40)
    # xlsxwriter writes repr-like text; reading it back must be exact
    with zipfile.ZipFile(path) as z:
        xml = z.read("xl/worksheets/sheet1.xml")
    import re

    texts = re.findall(rb"<v>([^<]*)</v>", xml)
    assert np.array_equal(d.ravel(), np.array([float(t) for t in texts]))


def test_shared_members_on_the_fast_path(tmp_path):
    """Every cell with r=: the regular path adds shared members in batches, in order, with cached values."""
    rows = (
        '<row r="1"><c r="A1"><v>1</v></c><c r="B1"><f t="shared" ref="B1:B3" si="0">A1*2</f><v>2</v></c></row>'
        '<row r="2"><c r="A2"><v>2</v></c><c r="B2"><f t="shared" si="0"/><v>7</v></c>'
        '<c r="C2"><f t="shared" ref="C2:C3" si="1">B2+1</f><v>5</v></c></row>'
        '<row r="3"><c r="A3"><v>3</v></c><c r="B3"><f t="shared" si="0"/><v>6</v></c>'
        '<c r="C3"><f t="shared" si="1"/></c></row>'
    )
    book = read_workbook(_xlsx(tmp_path / "s.xlsx", _sheet(rows)))
    sh = book.sheets["Block 0"]
    f = {(r, c): t for r, c, t, _ in sh.formulas}
    assert f == {(0, 1): "A1*2", (1, 1): "A2*2", (2, 1): "A3*2", (1, 2): "B2+1", (2, 2): "B3+1"}
    assert sh.cached[(1, 1)] == "7" and sh.cached[(2, 1)] == "6" and (2, 2) not in sh.cached
    assert evaluate(book).numbers["Block 0"][2, 2] == 7


def test_shared_member_before_its_master(tmp_path):
    rows = (
        '<row r="1"><c r="A1"><v>1</v></c><c r="B1"><f t="shared" si="4"/><v>2</v></c></row>'
        '<row r="2"><c r="B2"><f t="shared" ref="B1:B2" si="4">A1*2</f><v>2</v></c></row>'
    )
    _refused(_xlsx(tmp_path / "m.xlsx", _sheet(rows)), r"B1: shared formula si=b?'4'? has no master")


def test_the_reader_parses_a1_references_with_sheetgpt_a1():
    """The reader's A1 parsing is sheetgpt.a1's."""
    assert a1.col_name(0) == "A" and a1.col_name(27) == "AB" and a1.col_name(16383) == "XFD"
    assert a1.parse_cell("AB12") == (11, 27) and a1.parse_cell("$A$1") == (0, 0)


def _refused(path, match=None):
    t = time.perf_counter()
    with pytest.raises(WorkbookError, match=match):
        read_workbook(path)
    assert time.perf_counter() - t < 5


def test_not_a_zip_and_truncated(tmp_path):
    p = tmp_path / "a.xlsx"
    p.write_bytes(b"hello, I am text")
    _refused(p, "not an .xlsx")
    good = _xlsx(tmp_path / "g.xlsx", _sheet('<row r="1"><c r="A1"><v>1</v></c></row>'))
    data = good.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _refused(p)
    _refused(tmp_path / "missing.xlsx", "no such file")


def test_doctype_and_external_entity(tmp_path):
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b'<worksheet><sheetData><row><c t="inlineStr"><is><t>&lol2;</t></is></c></row></sheetData></worksheet>'
    )
    _refused(_xlsx(tmp_path / "b.xlsx", bomb), "DOCTYPE")
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + WB[WB.index(b"<workbook") :]
    _refused(_xlsx(tmp_path / "x.xlsx", _sheet(""), wb=xxe), "DOCTYPE")


def test_zip_bomb_declared_and_ratio(tmp_path, monkeypatch):
    # a member declaring a huge size (the header is patched, the data is tiny)
    p = _xlsx(tmp_path / "z.xlsx", _sheet('<row r="1"><c r="A1"><v>1</v></c></row>'))
    data = bytearray(p.read_bytes())
    name = b"xl/worksheets/sheet1.xml"
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(name) + 1)
    while data[cd + 46 : cd + 46 + len(name)] != name:
        cd = data.rfind(b"PK\x01\x02", 0, cd)
    data[cd + 24 : cd + 28] = (5 << 30 & 0xFFFFFFFF | 0xF0000000).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    _refused(p)
    # a real high-ratio member (deflate tops out near 1030:1, so the test lowers the limit)
    monkeypatch.setattr(zip_limits, "MAX_RATIO", 100)
    row = b"<row><c><v>0</v></c></row>" * ((32 << 20) // 26)
    _refused(_xlsx(tmp_path / "r.xlsx", _sheet("").replace(b"<sheetData>", b"<sheetData>" + row)), "zip bomb")


def test_too_many_rows_and_missing_part(tmp_path):
    _refused(_xlsx(tmp_path / "r.xlsx", _sheet('<row r="1048577"><c><v>1</v></c></row>')), "beyond")
    _refused(
        _xlsx(tmp_path / "d.xlsx", _sheet("").replace(b"<sheetData>", b'<dimension ref="A1:A2000000"/><sheetData>')),
        "beyond",
    )
    _refused(_xlsx(tmp_path / "c.xlsx", _sheet('<row r="1"><c r="XFE1"><v>1</v></c></row>')), "beyond")
    _refused(_xlsx(tmp_path / "m.xlsx", b"", drop=("xl/worksheets/sheet1.xml",)), "missing part")
    _refused(_xlsx(tmp_path / "w.xlsx", b"", drop=("xl/workbook.xml",)), "no xl/workbook.xml")


def test_text_where_number_expected(tmp_path):
    _refused(_xlsx(tmp_path / "t.xlsx", _sheet('<row r="1"><c r="A1"><v>1_000</v></c></row>')), "not a number")


def test_sheets_read_in_parallel_equal_those_read_in_turn(tmp_path, monkeypatch):
    """The same book read by forked workers (every book above PARALLEL_BYTES) and in one process."""
    path = tmp_path / "p.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    for k in range(3):
        ws = wb.add_worksheet(f"s{k}")
        ws.write_column(0, 0, [float(i) / 7 + k for i in range(50)])
        ws.write_string(0, 1, f"text {k}")
        ws.write_boolean(1, 1, True)
        for r in range(50):
            ws.write_formula(r, 2, f"=A{r + 1}*2+{k}")
        ws.write_array_formula(0, 3, 1, 3, "{=A1:A2*3}")
    wb.close()

    def flat(book):
        return {
            name: (sorted(zip(*[x.tolist() for x in s.numbers])), s.strings, s.booleans, sorted(s.formulas), s.dims)
            for name, s in book.sheets.items()
        }

    monkeypatch.setattr(pool, "PARALLEL_BYTES", 1 << 40)
    alone = read_workbook(path)
    monkeypatch.setattr(pool, "PARALLEL_BYTES", 0)
    calls, parallel = [], pool.read_parallel

    def spy(*args, **kwargs):
        calls.append(1)
        return parallel(*args, **kwargs)

    monkeypatch.setattr(pool, "read_parallel", spy)
    together = read_workbook(path)
    assert calls == [1]
    assert flat(together) == flat(alone) and list(together.sheets) == list(alone.sheets)


def test_a_sheet_read_in_chunks_cuts_at_padded_row_end_tags(tmp_path, monkeypatch):
    """Rows whose end tag is '</row  >' (valid XML, as the padded weight tabs write it) are cut
    between chunks like '</row>': a sheet larger than one chunk reads the same as in one piece."""
    cells = lambda r: "".join(f'<c r="{a1.cell(r, c)}" ><v>{r * 10 + c}</v></c>' for c in range(8))  # noqa: E731
    rows = "".join(f'<row  r="{r + 1}">{cells(r)}</row  >' for r in range(400))
    path = tmp_path / "padded.xlsx"
    _write_padded_book(path, rows)
    whole = read_workbook(path).sheets["s"].numbers
    monkeypatch.setattr(zip_limits, "CHUNK", 1000)  # many chunks, each cut at a padded end tag
    monkeypatch.setattr(zip_limits, "MAX_ROW_XML_BYTES", 4000)
    parts = read_workbook(path).sheets["s"].numbers
    assert [x.tolist() for x in parts] == [x.tolist() for x in whole]
    assert sorted(whole[2].tolist()) == sorted(float(r * 10 + c) for r in range(400) for c in range(8))


def _write_padded_book(path, rows: str) -> None:
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="xml" ContentType="application/xml"/></Types>',
        )
        z.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
            '<sheet name="s" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
            f'2006/relationships"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
            "</Relationships>",
        )
        z.writestr(
            "xl/worksheets/sheet1.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{main}"><sheetData>{rows}</sheetData>'
            "</worksheet>",
        )
