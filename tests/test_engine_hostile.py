"""The engine on hostile workbooks: it reads what a conforming XML parser reads or refuses with one
line, and its memory and depth are bounded by what the input can justify (issue 18).

The XML differential: hypothesis writes variants of one sheet (attribute order and quoting,
whitespace, self-closing cells, a prefix bound to SpreadsheetML, foreign attributes, character
references, CR LF line ends; and the constructs the reader refuses: comments, CDATA, processing
instructions, foreign elements, namespace declarations inside <sheetData>). ``xml.etree``'s
iterparse is the oracle (no DOCTYPE is ever generated: that is refused before parsing).
Memory bombs run in a subprocess under ``resource.setrlimit(RLIMIT_AS)``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import zipfile
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import numpy as np
import pytest
import xlsxwriter
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sheetgpt import a1
from sheetgpt.engine import libreoffice, zip_limits
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.errors import WorkbookError

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
CT = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Override PartName="/xl/workbook.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>'
)
WB = (
    f'<?xml version="1.0"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>'
    '<sheet name="s" sheetId="1" r:id="rId1"/></sheets></workbook>'
).encode()
RELS = (
    b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    b'Target="worksheets/sheet1.xml"/>'
    b'<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" '
    b'Target="sharedStrings.xml"/></Relationships>'
)
SST_TEXTS = ["zero", "a&b", "x<y"]
SST = f'<?xml version="1.0"?><sst xmlns="{MAIN}">' + "".join(f"<si><t>{escape(t)}</t></si>" for t in SST_TEXTS)
SST = (SST + "</sst>").encode()


def write_xlsx(path, sheet_xml: bytes, parts: dict | None = None):
    members = {
        "[Content_Types].xml": CT,
        "xl/workbook.xml": WB,
        "xl/_rels/workbook.xml.rels": RELS,
        "xl/sharedStrings.xml": SST,
        "xl/worksheets/sheet1.xml": sheet_xml,
    }
    members.update(parts or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


# ------------------------------------------------------------------ the oracle


def oracle(sheet_xml: bytes) -> dict:
    """What a conforming parser reads: {(row, col): ('n', float) | ('s', text) | ('b', bool) | ('f', text)}."""
    assert b"<!DOCTYPE" not in sheet_xml
    main = "{" + MAIN + "}"
    root = next(
        el for _, el in ElementTree.iterparse(io.BytesIO(sheet_xml), events=("end",)) if el.tag.endswith("worksheet")
    )
    out = {}
    for row in root.find(main + "sheetData").findall(main + "row"):
        for c in row.findall(main + "c"):
            r, col = a1.parse_cell(c.get("r"))
            f, v = c.find(main + "f"), c.find(main + "v")
            t = c.get("t", "n")
            if f is not None:
                out[(r, col)] = ("f", (f.text or "").strip().removeprefix("="))
            elif t == "s":
                out[(r, col)] = ("s", SST_TEXTS[int(v.text)])
            elif t == "inlineStr":
                out[(r, col)] = ("s", "".join(x.text or "" for x in c.find(main + "is").findall(main + "t")))
            elif t == "b":
                out[(r, col)] = ("b", v.text.strip() in ("1", "true"))
            elif v is not None and (v.text or "").strip():
                out[(r, col)] = ("n", float(v.text))
    return out


def ours(path) -> dict:
    sh = read_workbook(path).sheets["s"]
    out = {(int(r), int(c)): ("n", float(v)) for r, c, v in zip(*sh.numbers)}
    out |= {rc: ("s", t) for rc, t in sh.strings.items()}
    out |= {rc: ("b", b) for rc, b in sh.booleans.items()}
    out |= {(r, c): ("f", t) for r, c, t, _ in sh.formulas}
    return out


# ------------------------------------------------------------------ generated sheets

# pieces of a text as written in XML: characters (escaped when written) and character references
TEXT = st.lists(st.sampled_from([*"ab1 +-*&<>\"'é中", "\r\n", "\r", "&#x41;", "&#233;", "&#13;"]), max_size=8)
FORMULAS = st.sampled_from(["1+2", "A1*2", "SUM(A1:B2)", '"x"&"y"', "=3-1", " 4/2 "])
REFUSED = (b"<!--", b"CDATA", b"<?sheetgpt", b"<o:", b"xmlns='urn:other'", b'xmlns="urn:other"')


def xml_text(pieces: list[str]) -> str:
    return "".join(p if p.startswith("&#") else escape(p) for p in pieces)


@st.composite
def cells(draw):
    kind = draw(st.sampled_from(["n", "s", "inline", "b", "f", "empty"]))
    if kind == "n":
        x = draw(st.floats(allow_nan=False, allow_infinity=False, width=64))
        return kind, repr(x)
    if kind == "s":
        return kind, str(draw(st.integers(0, len(SST_TEXTS) - 1)))
    if kind == "inline":
        return kind, draw(st.lists(TEXT, min_size=1, max_size=2))
    if kind == "b":
        return kind, draw(st.sampled_from(["0", "1"]))
    if kind == "f":
        return kind, draw(FORMULAS)
    return kind, None


HOSTILE = ["comment", "cdata", "pi", "foreign_f", "foreign_row_attr_ns", "xmlns_in_row"]


@st.composite
def sheets(draw):
    """(sheet XML, the hostile construct in it or None)."""
    prefix = draw(st.sampled_from(["", "x:"]))  # x is bound to SpreadsheetML as well as the default
    q = draw(st.sampled_from(['"', "'"]))
    sp = draw(st.sampled_from([" ", "  ", "\n"]))
    hostile = draw(st.sampled_from([None, None, None, *HOSTILE]))
    rows = draw(st.lists(st.lists(cells(), min_size=1, max_size=4), min_size=1, max_size=4))
    body = []
    for r, row in enumerate(rows):
        attrs = [f"r={q}{r + 1}{q}"] + ([f"x14ac:dyDescent={q}0.25{q}"] if draw(st.booleans()) else [])
        if hostile == "xmlns_in_row" and r == 0:
            attrs.append(f"xmlns={q}urn:other{q}")
        out = [f"<{prefix}row {' '.join(attrs)}>"]
        for col, (kind, value) in enumerate(row):
            ca = [f"r={q}{a1.cell(r, col)}{q}"]
            if draw(st.booleans()):
                ca.append(f"s={q}1{q}")
            if draw(st.booleans()):
                ca.append(f"o:t={q}s{q}")  # a foreign attribute named t: not the cell's type
            ca = draw(st.permutations(ca))
            t = {"s": "s", "inline": "inlineStr", "b": "b"}.get(kind)
            if t:
                ca.append(f"t={q}{t}{q}")
            head = f"<{prefix}c{sp}{sp.join(ca)}"
            if kind == "empty":
                out.append(head + "/>")
            elif kind == "inline":
                ts = "".join(f"<{prefix}t>{xml_text(p)}</{prefix}t>" for p in value)
                out.append(f"{head}><{prefix}is>{ts}</{prefix}is></{prefix}c>")
            elif kind == "f":
                ftext = escape(value)
                if hostile == "cdata" and "<![" not in "".join(body):
                    ftext = f"<![CDATA[{value}]]>"
                decoy = "<o:f>9*9</o:f>" if hostile == "foreign_f" else ""
                out.append(f"{head}>{decoy}<{prefix}f>{ftext}</{prefix}f><{prefix}v>0</{prefix}v></{prefix}c>")
            else:
                out.append(f"{head}><{prefix}v>{value}</{prefix}v></{prefix}c>")
        out.append(f"</{prefix}row>")
        body.append("".join(out))
    if hostile == "comment":
        at = draw(st.integers(0, len(body)))
        body.insert(at, "<!-- <row r='99'><c r='A99'><v>7</v></c></row> -->")
    if hostile == "pi":
        body.insert(draw(st.integers(0, len(body))), "<?sheetgpt ignore?>")
    if hostile == "foreign_row_attr_ns":
        body.insert(draw(st.integers(0, len(body))), "<o:row r='50'><c r='A50'><v>5</v></c></o:row>")
    xml = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<worksheet xmlns="{MAIN}" xmlns:x="{MAIN}" '
        f'xmlns:o="urn:other" xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac">'
        f"<{prefix}sheetData>{''.join(body)}</{prefix}sheetData></worksheet>"
    )
    return xml.encode(), hostile


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sheets())
def test_the_reader_reads_what_a_conforming_parser_reads_or_refuses(tmp_path_factory, generated):
    xml, _ = generated
    path = write_xlsx(tmp_path_factory.mktemp("x") / "g.xlsx", xml)
    if not any(construct in xml for construct in REFUSED):  # (a generated construct may find no cell to go in)
        assert ours(path) == oracle(xml)
        event("read")
        return
    with pytest.raises(WorkbookError, match="refusing it") as e:
        read_workbook(path)
    assert "\n" not in e.value.message
    kinds = ("CDATA", "comment", "processing instruction", "foreign XML namespace", "namespace declaration")
    event("refused: " + next(k for k in kinds if k in e.value.message))


# ------------------------------------------------------------------ refused constructs, one by one


def _sheet(rows: str, root_attrs: str = f'xmlns="{MAIN}"') -> bytes:
    return f'<?xml version="1.0"?><worksheet {root_attrs}><sheetData>{rows}</sheetData></worksheet>'.encode()


@pytest.mark.parametrize(
    "xml,match",
    [
        (_sheet('<row r="1"><c r="A1"><f><![CDATA[1+1]]></f><v>2</v></c></row>'), "a CDATA section"),
        (_sheet('<row r="1"><!--<c r="A1"><f>9</f></c>--><c r="A1"><f>1+1</f></c></row>'), "an XML comment"),
        (_sheet('<row r="1"><?pi x?><c r="A1"><v>1</v></c></row>'), "a processing instruction"),
        (_sheet('<row r="1"><c r="A1"><o:f>9</o:f><v>1</v></c></row>', f'xmlns="{MAIN}" xmlns:o="urn:o"'), "foreign"),
        (_sheet('<row r="1"><c r="A1"><v>1</v></c></row>', 'xmlns="urn:not-spreadsheetml"'), "default XML namespace"),
        (_sheet('<row r="1"><c r="A1" t="inlineStr"><is><t>&#x110000;</t></is></c></row>'), "not an XML character"),
        (_sheet('<row r="1"><c r="A1" t="inlineStr"><is><t>&nbsp;</t></is></c></row>'), "undefined entity"),
        (_sheet('<row r="1"><c r="A1"><f>1+&#0;</f></c></row>'), "not an XML character"),
        (_sheet('<row r="1"><c r="A1"><f>' + "1+" * 4096 + "1</f></c></row>"), "8,193 characters"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?>' + _sheet("")[21:], "only UTF-8"),
    ],
)
def test_markup_the_reader_does_not_read_is_refused(tmp_path, xml, match):
    with pytest.raises(WorkbookError, match=match):
        read_workbook(write_xlsx(tmp_path / "h.xlsx", xml))


def test_duplicate_sheets_and_members_are_refused(tmp_path):
    many = b"".join(f'<sheet name="s" sheetId="{i}" r:id="rId1"/>'.encode() for i in range(2000))
    wb = WB.replace(b'<sheet name="s" sheetId="1" r:id="rId1"/>', many)
    with pytest.raises(WorkbookError, match="two sheets are named 's'"):
        read_workbook(write_xlsx(tmp_path / "d.xlsx", _sheet(""), {"xl/workbook.xml": wb}))
    wb = WB.replace(b"</sheets>", b'<sheet name="t" sheetId="2" r:id="rId1"/></sheets>')
    with pytest.raises(WorkbookError, match="two sheets are stored in one part"):
        read_workbook(write_xlsx(tmp_path / "p.xlsx", _sheet(""), {"xl/workbook.xml": wb}))
    path = write_xlsx(tmp_path / "m.xlsx", _sheet('<row r="1"><c r="A1"><v>1</v></c></row>'))
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("xl/worksheets/sheet1.xml", _sheet('<row r="1"><c r="A1"><v>2</v></c></row>'))
    with pytest.raises(WorkbookError, match="appears twice"):
        read_workbook(path)
    with pytest.raises(WorkbookError, match="appears twice"):
        libreoffice.inject_sentinel(path, tmp_path / "out.xlsx")


def test_a_zip_of_too_many_members_is_refused(tmp_path):
    path = write_xlsx(tmp_path / "z.xlsx", _sheet(""))
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED) as z:
        for i in range(zip_limits.MAX_MEMBERS):
            z.writestr(f"junk/{i}", b"")
    with pytest.raises(WorkbookError, match="members"):
        read_workbook(path)


def test_declared_sizes_are_bounded_in_total(tmp_path, monkeypatch):
    path = write_xlsx(tmp_path / "t.xlsx", _sheet('<row r="1"><c r="A1"><v>1</v></c></row>'))
    monkeypatch.setattr(zip_limits, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(WorkbookError, match="in all"):
        read_workbook(path)


# ------------------------------------------------------------------ depth


def _one_formula(tmp_path, formula: str):
    path = tmp_path / "f.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("s").write_formula("A1", formula)
    wb.close()
    return read_workbook(path)


@pytest.mark.parametrize(
    "formula,value",
    [
        ("=" + "+".join(["1"] * 1001), 1001.0),  # 2 kB, a chain of 1,000 operators
        ("=" + "+".join(["1"] * 4096), 4096.0),  # 8,191 characters
        ("=" + "(" * 63 + "2" + ")" * 63, 2.0),
        ("=" + "ABS(" * 63 + "-3" + ")" * 63, 3.0),
    ],
)
def test_long_and_deep_formulas_are_computed(tmp_path, formula, value):
    assert evaluate(_one_formula(tmp_path, formula)).numbers["s"][0, 0] == value


@pytest.mark.parametrize(
    "formula", ["=" + "(" * 500 + "1" + ")" * 500, "=" + "ABS(" * 65 + "1" + ")" * 65, "=" + "-" * 3000 + "1"]
)
def test_formulas_nested_beyond_excel_are_refused(tmp_path, formula):
    with pytest.raises(WorkbookError, match="nested more than 64 levels"):
        evaluate(_one_formula(tmp_path, formula), strict=True)
    assert evaluate(_one_formula(tmp_path, formula)).errors["s"] == {(0, 0): "#NAME?"}  # graded where a learner's


# ------------------------------------------------------------------ memory, under a cap

CAPPED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap} << 20, {cap} << 20))
{code}
"""


def run_capped(code: str, cap_mb: int) -> subprocess.CompletedProcess:
    script = CAPPED.format(cap=cap_mb, code=textwrap.dedent(code))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def test_a_reference_far_beyond_the_sheet_allocates_only_what_the_sheet_holds(tmp_path):
    path = tmp_path / "r.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    w, s = wb.add_worksheet("wte"), wb.add_worksheet("s")
    w.write_column("A1", [1, 2, 3, 4, 5])
    s.write_formula("A1", "=SUM(wte!A1:XFD1048576)")  # 17 billion cells named, 5 held
    s.write_formula("A2", "=MATCH(4,wte!A1:A1048576,0)")
    s.write_formula("A3", "=AND(wte!A1:XFD1048576)")
    s.write_formula("A4", "=ROWS(wte!A1:XFD1048576)")
    s.write_formula("B1", "=SUMPRODUCT(wte!A1:XFD1048576,wte!A1:XFD1048576)")
    wb.close()
    code = f"""
        from sheetgpt.engine.reader import read_workbook
        from sheetgpt.engine.evaluator import evaluate
        from sheetgpt.errors import WorkbookError
        book = read_workbook({str(path)!r})
        book.sheets["s"].formulas = [f for f in book.sheets["s"].formulas if f[1] == 0]
        print(evaluate(book).numbers["s"][:4, 0].tolist())
        book = read_workbook({str(path)!r})
        try:
            evaluate(book, strict=True)
        except WorkbookError as e:
            print(e.message)
    """
    out = run_capped(code, 1024)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = out.stdout.strip().splitlines()
    assert first == "[15.0, 4.0, 1.0, 1048576.0]"
    assert "s!B1: a reference of 1,048,576 x 16,384 cells reaches far beyond the 5 x 1 cells" in second


def test_an_mmult_of_a_column_by_its_transpose_is_refused_not_allocated(tmp_path):
    """Found by the hypothesis sweep below: a 1,048,575-row column times its transpose names 10^12
    products (8 TiB); it is refused in one line (exit 2), within the memory cap, not allocated."""
    code = f"""
        import xlsxwriter
        from sheetgpt.engine.reader import read_workbook
        from sheetgpt.engine.evaluator import evaluate
        from sheetgpt.errors import WorkbookError
        path = {str(tmp_path / "m.xlsx")!r}
        wb = xlsxwriter.Workbook(path)
        wb.add_worksheet("w").write_column("A1", [1, 2, 3, 4, 5])
        wb.add_worksheet("s").write_formula("A1", "=MMULT(w!A2:A1048576,TRANSPOSE(w!A2:A1048576))")
        wb.close()
        try:
            evaluate(read_workbook(path), strict=True)
        except WorkbookError as e:
            print(e.message)
    """
    out = run_capped(code, 1024)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "MMULT of 1,048,575 x 1 by 1 x 1,048,575 cells" in out.stdout and "refusing it" in out.stdout


@pytest.mark.slow
def test_the_sentinel_step_copies_unread_members_without_inflating_them(tmp_path):
    """A book whose xl/media member inflates to 768 MB: the LibreOffice engine's copy (with the
    sentinel sheet) is made under a 512 MB address-space cap, and the member is byte-identical."""
    path = write_xlsx(tmp_path / "b.xlsx", _sheet('<row r="1"><c r="A1"><v>1</v></c></row>'))
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()[: 1 << 12] + bytes((1 << 20) - (1 << 12))
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z,
        z.open("xl/media/image1.bin", "w", force_zip64=True) as f,
    ):
        for _ in range(768):
            f.write(block)
    code = f"""
        from sheetgpt.engine.libreoffice import inject_sentinel
        inject_sentinel({str(path)!r}, {str(tmp_path / "s.xlsx")!r})
    """
    out = run_capped(code, 512)
    assert out.returncode == 0, out.stderr[-2000:]
    with zipfile.ZipFile(path) as a, zipfile.ZipFile(tmp_path / "s.xlsx") as b:
        x, y = a.getinfo("xl/media/image1.bin"), b.getinfo("xl/media/image1.bin")
        assert (x.CRC, x.compress_size, x.file_size) == (y.CRC, y.compress_size, y.file_size)
        assert b.testzip() is None
        assert libreoffice.SENTINEL_SHEET.encode() in b.read("xl/workbook.xml")


@pytest.mark.slow
def test_hypothesis_formulas_stay_within_the_memory_cap_and_their_bounds():
    """Resource bounds under generated input: formulas of random nesting, chain length and
    reference extent (up to XFD1048576 over a sheet of 5 cells), each read and evaluated inside
    one process capped at 1 GiB. Every one computes or is refused with a WorkbookError (exit 2):
    no MemoryError, RecursionError or other exception, and none takes more than a few seconds."""
    code = r"""
        import tempfile, time
        import xlsxwriter
        from hypothesis import HealthCheck, given, settings, strategies as st
        from sheetgpt import a1
        from sheetgpt.engine.evaluator import evaluate
        from sheetgpt.engine.reader import read_workbook
        from sheetgpt.errors import WorkbookError

        FUNCS = ["SUM", "SUMPRODUCT", "MAX", "COUNT", "AND", "ROWS", "TRANSPOSE", "MMULT", "INDEX", "MATCH"]
        outcomes = {"computed": 0, "refused": 0}

        @st.composite
        def formulas(draw):
            r0, c0 = draw(st.integers(0, 10)), draw(st.integers(0, 10))
            r1 = draw(st.sampled_from([r0, r0 + 3, 1000, a1.MAX_ROWS - 1]))
            c1 = draw(st.sampled_from([c0, c0 + 2, 300, a1.MAX_COLS - 1]))
            ref = "w!" + a1.span(r0, c0, r1, c1, (False, False), (False, False))
            f = draw(st.sampled_from(FUNCS))
            call = {"MMULT": f"MMULT({ref},TRANSPOSE({ref}))", "INDEX": f"INDEX({ref},2,1)",
                    "MATCH": f"MATCH(3,{ref},0)"}.get(f, f"{f}({ref})")
            depth, chain = draw(st.integers(0, 80)), draw(st.integers(1, 2500))
            return "=" + "(" * depth + "+".join([call] + ["1"] * (chain - 1)) + ")" * depth

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(formulas())
        def one(formula):
            with tempfile.TemporaryDirectory() as tmp:
                path = tmp + "/b.xlsx"
                wb = xlsxwriter.Workbook(path)
                wb.add_worksheet("w").write_column("A1", [1, 2, 3, 4, 5])
                wb.add_worksheet("s").write_formula("A1", formula)
                wb.close()
                started = time.monotonic()
                try:
                    evaluate(read_workbook(path), strict=True)
                    outcomes["computed"] += 1
                except WorkbookError:
                    outcomes["refused"] += 1
                assert time.monotonic() - started < 20, formula[:80]

        one()
        print(outcomes["computed"], outcomes["refused"])
    """
    out = run_capped(code, 1024)
    assert out.returncode == 0, out.stderr[-3000:]
    computed, refused = (int(x) for x in out.stdout.split())
    assert computed > 0 and refused > 0  # the generator reaches both sides of the bounds
