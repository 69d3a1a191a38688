"""An exercise book opened cold: what a viewer that does not recalculate shows before the learner starts.

Every formula cell caches a value; none caches an error; a cell whose formula reads an exercise's blank
cells, directly or through other formulas, caches 'fill exercise "TITLE" first' (the first exercise it
waits on, by the title the book gives it), and every other cell the value the book without exercises
caches. Which cells wait is found here by an independent walk: openpyxl's formulas (shared formulas
expanded by openpyxl) and a small reference parser, not the engine's. LibreOffice, converting the
book without recalculating, shows no error text.
"""

from __future__ import annotations

import csv
import re
import subprocess
import zipfile

import numpy as np
import openpyxl
import pytest
from openpyxl.worksheet.formula import ArrayFormula

from sheetgpt import a1
from sheetgpt.check import check_book
from sheetgpt.engine import libreoffice as lo
from sheetgpt.exercises import MARK, families

FAMILIES = (
    "embedding",
    "layer_norm",
    "variance",
    "attention",
    "mask",
    "softmax",
    "linear",
    "gelu",
    "mlp",
    "residual",
    "unembedding",
    "softmax_backward",  # the Saliency tab's (every book's)
    "layer_norm_backward",
    "gelu_backward",
    "attention_backward",
    "crossentropy_backward",  # the Train tab's (--train)
)  # as docs/exercises.md lists them

_SHEET = r"(?:'((?:[^']|'')+)'|([A-Za-z_][\w.]*))!"
_CELL = r"\$?([A-Z]{1,3})\$?(\d+)"
REF = re.compile(rf"(?<![\w.$'])(?:{_SHEET})?{_CELL}(?::{_CELL})?(?![\w(!])")


def col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def refs(formula: str, sheet: str) -> list[tuple[str, int, int, int, int]]:
    """(sheet, r0, c0, r1, c1) of every A1 reference in ``formula`` (string literals skipped)."""
    out = []
    for m in REF.finditer(re.sub(r'"(?:[^"]|"")*"', '""', formula)):
        quoted, plain, c0, r0, c1, r1 = m.groups()
        name = quoted.replace("''", "'") if quoted else plain or sheet
        a, b = (int(r0) - 1, col_index(c0)), (int(r1 or r0) - 1, col_index(c1 or c0))
        out.append((name, min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])))
    return out


def formula_cells(path) -> dict[str, list]:
    """{sheet: [(cells, refs)]}: each formula (a CSE array's whole range as its cells), in book order."""
    wb = openpyxl.load_workbook(path)
    out = {}
    for ws in wb.worksheets:
        items = []
        for row in ws.iter_rows():
            for cell in row:
                v = cell.value
                if isinstance(v, ArrayFormula):
                    lo_, _, hi = v.ref.partition(":")
                    a = openpyxl.utils.cell.coordinate_to_tuple(lo_)
                    b = openpyxl.utils.cell.coordinate_to_tuple(hi or lo_)
                    cells = [(r - 1, c - 1) for r in range(a[0], b[0] + 1) for c in range(a[1], b[1] + 1)]
                    items.append((cells, refs(v.text, ws.title)))
                elif isinstance(v, str) and v.startswith("="):
                    items.append(([(cell.row - 1, cell.column - 1)], refs(v, ws.title)))
        out[ws.title] = items
    return out


def waits(path, sources: list[tuple[str, int, int, int, int]]) -> dict[tuple[str, int, int], int]:
    """{(sheet, row, col): k} of every formula cell that reads source k (the lowest), directly or
    through other formulas: labels pushed along the references until nothing changes."""
    book = formula_cells(path)
    size = {}
    for sheet, items in book.items():
        rc = [x for cells, _ in items for x in cells]
        size[sheet] = (max([r for r, _ in rc] + [0]) + 1, max([c for _, c in rc] + [0]) + 1)
    for sheet, _r0, _c0, r1, c1 in sources:
        size[sheet] = (max(size[sheet][0], r1 + 1), max(size[sheet][1], c1 + 1))
    big = len(sources)
    lab = {s: np.full(shape, big) for s, shape in size.items()}
    for k, (sheet, r0, c0, r1, c1) in reversed(list(enumerate(sources))):
        lab[sheet][r0 : r1 + 1, c0 : c1 + 1] = k
    changed = True
    while changed:
        changed = False
        for sheet, items in book.items():
            for cells, rs in items:
                got = min(
                    [
                        int(lab[s][r0 : r1 + 1, c0 : c1 + 1].min())
                        for s, r0, c0, r1, c1 in rs
                        if lab[s][r0 : r1 + 1, c0 : c1 + 1].size
                    ]
                    + [big]
                )
                for r, c in cells:
                    if got < lab[sheet][r, c]:
                        lab[sheet][r, c] = got
                        changed = True
    return {
        (sheet, r, c): int(lab[sheet][r, c])
        for sheet, items in book.items()
        for cells, _ in items
        for r, c in cells
        if lab[sheet][r, c] < big
    }


def cell_xml(path) -> dict[str, list[str]]:
    """{sheet: [the XML of each <c> element]} straight from the file."""
    with zipfile.ZipFile(path) as z:
        wb = z.read("xl/workbook.xml").decode()
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
        target = dict(re.findall(r'Id="(rId\d+)"[^>]*Target="([^"]+)"', rels))
        target |= {k: v for v, k in re.findall(r'Target="([^"]+)"[^>]*Id="(rId\d+)"', rels)}
        out = {}
        for name, rid in re.findall(r'<sheet name="([^"]+)" sheetId="\d+" r:id="(rId\d+)"', wb):
            xml = z.read("xl/" + target[rid].removeprefix("/xl/")).decode()
            out[name] = re.findall(r"<c [^>]*/>|<c [^>]*>.*?</c>", xml)
    return out


def exercise_titles(path, built) -> list[tuple[str, str]]:
    """(stage, title) of each exercise, the title as the book writes it above the region."""
    wb = openpyxl.load_workbook(path)
    out = []
    for name in built.exercises:
        r = built.layout.region(name)
        title = wb[r.tab].cell(r.title_row + 1, 1).value
        assert title.endswith(" · " + MARK)
        out.append((name, title.removesuffix(" · " + MARK)))
    return out


def test_the_families_here_are_the_books():
    from sheetgpt.book.tabs import TABS

    assert set(FAMILIES) == set(families(TABS))


@pytest.mark.parametrize(
    "family", [f if f == "variance" else pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES]
)
def test_a_cold_exercise_book_says_fill_first_exactly_where_a_value_waits_on_a_blank(book, family):
    train = {"tabs": {"train": True}} if family == "crossentropy_backward" else {}
    built = book("micro", exercise=family, **train)
    plain = book("micro", **train)
    # every formula cell caches a value, and none an error
    for sheet, cells in cell_xml(built.path).items():
        for c in cells:
            assert "<f" not in c or "<v" in c, (sheet, c)
            assert 't="e"' not in c, (sheet, c)
    titles = exercise_titles(built.path, built)
    regions = [built.layout.region(n) for n, _ in titles]
    want = waits(built.path, [(r.tab, r.top, r.left, r.bottom, r.right) for r in regions])
    assert want  # every family has cells after it
    cold = openpyxl.load_workbook(built.path, data_only=True)
    before = openpyxl.load_workbook(plain.path, data_only=True)
    formulas = openpyxl.load_workbook(built.path)
    same_formula = openpyxl.load_workbook(plain.path)
    shown, kept = 0, 0
    for sheet, items in formula_cells(built.path).items():
        for cells, _ in items:
            for r, c in cells:
                got = cold[sheet].cell(r + 1, c + 1).value
                k = want.get((sheet, r, c))
                if k is not None:
                    assert got == f'fill exercise "{titles[k][1]}" first', (sheet, r, c, got)
                    shown += 1
                    continue
                assert not (isinstance(got, str) and got.startswith("fill exercise")), (sheet, r, c, got)
                f = formulas[sheet].cell(r + 1, c + 1).value
                if sheet != "Guide" and isinstance(f, str) and f == same_formula[sheet].cell(r + 1, c + 1).value:
                    assert got == before[sheet].cell(r + 1, c + 1).value, (sheet, r, c)  # the true value
                    kept += 1
    assert shown == len(want) and kept > 100
    report = check_book(built.path)
    cached = [s for s in report.stages if s.stage == "cached"]
    assert cached and all(s.passed for s in cached), [s.first_bad for s in cached if not s.passed]
    assert {s.tab for s in cached} >= {"Guide", "Block 0", "Predict"}


def test_check_fails_a_cold_cache_that_shows_a_value_computed_from_the_blanks(book, tmp_path):
    """The message is proven: the book without it (each waiting cell caching a number) fails."""
    built = book("micro", exercise="gelu")
    src, dst = built.path, tmp_path / "junk.xlsx"
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for item in z.infolist():
            data = z.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                text = data.decode()
                text = re.sub(
                    r' t="str">(<f[^>]*>[^<]*</f>|<f[^>]*/>)<v>fill exercise[^<]*</v>', r">\1<v>-321.25</v>", text
                )
                data = text.encode()
            out.writestr(item, data)
    report = check_book(dst)
    bad = [s for s in report.stages if s.stage == "cached" and not s.passed]
    assert bad and bad[0].first_bad["got"] == -321.25 and "fill exercise" in bad[0].first_bad["expected"]


@pytest.mark.libreoffice
def test_libreoffice_opening_a_cold_exercise_book_shows_no_error_and_check_passes_its_cache(book, tmp_path):
    built = book("micro", exercise="variance,softmax,linear")
    profile = tmp_path / "profile"  # a fresh profile: LibreOffice's default, never recalculate an .xlsx
    subprocess.run(
        [
            lo.find_soffice(),
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false,-1",
            "--outdir",
            str(tmp_path),
            str(built.path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    texts = [v for p in tmp_path.glob("*.csv") for row in csv.reader(p.open(encoding="utf-8")) for v in row]
    assert len(list(tmp_path.glob("*.csv"))) > 10  # every sheet
    errors = [v for v in texts if re.fullmatch(r"#[A-Z/0]+[!?]?|Err:\d+", v)]
    assert errors == []
    first = exercise_titles(built.path, built)[0][1]
    assert texts.count(f'fill exercise "{first}" first') > 100
    guide = next(p for p in tmp_path.glob("*.csv") if p.stem.endswith("-Guide"))
    sentinel = next(
        row for row in csv.reader(guide.open(encoding="utf-8")) if row and row[0].startswith("Recalculated?")
    )
    assert sentinel[1] == "0"  # LibreOffice did not recalculate: what it shows is what the file caches
    report = check_book(built.path, engine="libreoffice")
    cached = [s for s in report.stages if s.stage == "cached"]
    assert cached and all(s.passed for s in cached), [s.first_bad for s in cached if not s.passed]


@pytest.mark.parametrize(
    "engine",
    [
        "fast",
        pytest.param("libreoffice", marks=pytest.mark.libreoffice),
        pytest.param("gnumeric", marks=pytest.mark.gnumeric),
        pytest.param("ironcalc", marks=[pytest.mark.ironcalc, pytest.mark.libreoffice]),
    ],
)
def test_the_filled_book_passes_and_grades_in_every_engine(book, tmp_path, engine):
    """The learner's right formulas (VAR.P of each row the layer norm reads), typed over the cold book:
    the guarded arrays after them compute the stages, and every exercise passes."""
    built = book("micro", exercise="variance")
    reads = {"h.0.ln_1.var": "embed.h", "h.0.ln_2.var": "h.0.res_1", "ln_f.var": "h.0.res_2"}
    typed = {}
    for name in built.exercises:
        r, x = built.layout.region(name), built.layout.region(reads[name])
        for i in range(r.rows):
            typed[(r.tab, r.top + i, r.left)] = f"=_xlfn.VAR.P({x.row(i, r.tab)})"
    if engine == "ironcalc":  # IronCalc reads no openpyxl file: typed and saved by LibreOffice, as a learner does
        edits = {(tab, a1.cell(r, c)): {"formula": f.replace("_xlfn.", "")} for (tab, r, c), f in typed.items()}
        lo.recalculate(built.path, edits=edits, save_as=tmp_path / "filled.xlsx", sheets=["Guide"])
    else:
        wb = openpyxl.load_workbook(built.path)
        for (tab, r, c), f in typed.items():
            wb[tab].cell(r + 1, c + 1).value = f
        wb.save(tmp_path / "filled.xlsx")
    report = check_book(tmp_path / "filled.xlsx", engine=engine)
    assert [(e["stage"], e["status"]) for e in report.exercises] == [(n, "pass") for n in built.exercises]
    assert report.passed, [s for s in report.stages if not s.passed][:1]
