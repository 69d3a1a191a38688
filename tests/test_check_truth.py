"""The proof cannot be fooled: cached values proven, formulas required, nothing outside the book read,
a teacher's token edits judged by what the cell really holds, the formulas engine's estimate.

Books are random GPT-2-shaped models (conftest); edits are made on the zip's XML by hand or with
openpyxl, as a person or another app would.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from sheetgpt.check import CACHED, NOT_A_FORMULA, check_book
from sheetgpt.cli import main
from sheetgpt.engine.reader import read_workbook

ENGINES = [
    "fast",
    "formulas",
    pytest.param("libreoffice", marks=pytest.mark.libreoffice),
    pytest.param("gnumeric", marks=pytest.mark.gnumeric),
]


def run_check(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["check", *map(str, args)])
    assert not isinstance(result.exception, (AssertionError, KeyError, TypeError, ValueError)), result.exception
    return result.exit_code, result.stdout, result.stderr


def sheet_parts(path: Path) -> dict[str, str]:
    """Sheet name -> its zip member (workbook.xml and its relationships)."""
    with zipfile.ZipFile(path) as z:
        wb = z.read("xl/workbook.xml").decode()
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
    targets = dict(re.findall(r'<Relationship Id="([^"]+)" Type="[^"]+" Target="([^"]+)"', rels))
    return {
        name.replace("&amp;", "&"): "xl/" + targets[rid]
        for name, rid in re.findall(r'<sheet name="([^"]+)" sheetId="\d+" r:id="([^"]+)"', wb)
    }


def rewrite(src: Path, dst: Path, edits: dict[str, object], extra: dict[str, bytes] | None = None) -> Path:
    """Copy src to dst, applying edits[member](text) -> text; each edit must change its member."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            data = z.read(info.filename)
            if info.filename in edits:
                new = edits[info.filename](data.decode()).encode()
                assert new != data, f"the edit did not change {info.filename}"
                data = new
            out.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            out.writestr(name, data)
    return dst


_F = re.compile(r"<f[^>]*/>|<f[^>]*>[^<]*</f>")


@pytest.fixture(scope="module")
def micro(book, tmp_path_factory):
    path = tmp_path_factory.mktemp("truth") / "micro.xlsx"
    shutil.copy(book("micro", "the cat sat").path, path)
    return path


# ------------------------------------------------------------------ cached values


def test_a_tampered_cached_value_fails_the_cached_stage_and_names_its_cell(micro, tmp_path):
    part = sheet_parts(micro)["Block 0"]
    with zipfile.ZipFile(micro) as z:
        xml = z.read(part).decode()
    # the first formula cell with a numeric cached value: its <v> becomes 12345
    m = re.search(r'<c r="([A-Z]+[0-9]+)"(?: s="\d+")?><f[^>]*(?:/>|>[^<]*</f>)<v>([^<]*)</v></c>', xml)
    cell, cached = m.group(1), m.group(2)
    assert float(cached) != 12345
    start, end = m.span(2)
    tampered = rewrite(micro, tmp_path / "tampered.xlsx", {part: lambda x: x[:start] + "12345" + x[end:]})

    report = check_book(tampered)
    stage = next(s for s in report.stages if s.tab == "Block 0" and s.stage == CACHED)
    assert not stage.passed and stage.first_bad["cell"] == f"'Block 0'!{cell}" and stage.first_bad["got"] == 12345
    assert all(s.passed for s in report.stages if s.tab == "Block 0" and s.stage != CACHED)  # the formulas are fine
    code, out, _ = run_check(tampered)
    assert code == 1
    assert f"cached ({stage.first_bad['region']}): first wrong cell 'Block 0'!{cell} = =" in out
    assert "cached 12345.0" in out


def test_a_book_without_any_cached_value_is_proven_by_recomputation_alone(micro, tmp_path):
    resaved = tmp_path / "openpyxl.xlsx"
    openpyxl.load_workbook(micro).save(resaved)  # openpyxl keeps formulas, drops every cached value
    assert not any(len(s.cached) for s in read_workbook(resaved).sheets.values())
    report = check_book(resaved)
    assert report.passed and not any(s.stage == CACHED for s in report.stages)


# ------------------------------------------------------------------ formulas required

COMPUTED = ["Embed", "Block 0", "Final norm", "Logits", "Predict"]


def pasted_values(src: Path, dst: Path, tabs: list[str]) -> Path:
    """Every formula of these tabs deleted, each cell keeping its cached value (what Paste Values does)."""
    parts = sheet_parts(src)
    return rewrite(src, dst, {parts[t]: lambda x: _F.sub("", x) for t in tabs})


@pytest.mark.parametrize("engine", ["fast", pytest.param("libreoffice", marks=pytest.mark.libreoffice)])
def test_pasted_values_fail_as_a_value_not_a_formula(micro, tmp_path, engine):
    pasted = pasted_values(micro, tmp_path / "pasted.xlsx", COMPUTED)
    assert all(not read_workbook(pasted).sheets[t].formulas for t in COMPUTED)
    report = check_book(pasted, engine=engine)
    first = next(s for s in report.stages if not s.passed)
    assert first.tab == "Embed" and first.first_bad["reason"] == NOT_A_FORMULA
    bad = {s.tab for s in report.stages if not s.passed and s.first_bad.get("reason") == NOT_A_FORMULA}
    assert bad == set(COMPUTED)
    code, out, _ = run_check(pasted, "--engine", engine)
    assert code == 1 and f"holds a {NOT_A_FORMULA}" in out and out.strip().splitlines()[-1].startswith("FAIL")


def test_one_pasted_cell_inside_a_region_is_named(micro, tmp_path):
    part = sheet_parts(micro)["Block 0"]
    with zipfile.ZipFile(micro) as z:
        xml = z.read(part).decode()
    # a shared formula's member well inside the tab: its formula goes, its (true) cached value stays
    cells = list(re.finditer(r'<c r="([A-Z]+[0-9]+)"(?: s="\d+")?>(<f t="shared" si="\d+"/>)<v>[^<]*</v></c>', xml))
    m = cells[len(cells) // 2]
    start, end = m.span(2)
    pasted = rewrite(micro, tmp_path / "one.xlsx", {part: lambda x: x[:start] + x[end:]})
    report = check_book(pasted)
    failed = [s for s in report.stages if not s.passed and s.tab == "Block 0"]
    assert [s.first_bad["cell"] for s in failed if s.first_bad.get("reason") == NOT_A_FORMULA] == [
        f"'Block 0'!{m.group(1)}"
    ]
    assert failed[0].first_bad["count"] == 1
    code, out, _ = run_check(pasted)
    assert code == 1 and f"'Block 0'!{m.group(1)} holds a {NOT_A_FORMULA}" in out


# ------------------------------------------------------------------ nothing outside the book

SECRET = 987654.321


@pytest.fixture
def secret(tmp_path) -> Path:
    """A workbook outside the book, with a known value, its access time set far in the past."""
    d = tmp_path / "outside"
    d.mkdir()
    wb = openpyxl.Workbook()
    wb.active.title = "Sheet1"
    wb.active["A1"] = SECRET
    path = d / "secret.xlsx"
    wb.save(path)
    os.utime(path, (1, time.time()))  # relatime updates an access time older than the modification time
    return path


def linked_books(micro: Path, secret: Path, tmp_path: Path) -> dict[str, Path]:
    """The micro book with Embed!C5's formula reading the secret workbook, three ways."""
    parts = sheet_parts(micro)
    embed = parts["Embed"]
    with zipfile.ZipFile(micro) as z:
        xml = z.read(embed).decode()
    m = re.search(r'<c r="C5"[^>]*><f[^>]*>([^<]*)</f>', xml)  # the master of C5:J14's shared formula
    start, end = m.span(1)

    def formula(text):
        return lambda x: x[:start] + text + x[end:]

    ext_rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        f'2006/relationships/externalLinkPath" Target="file://{secret}" TargetMode="External"/></Relationships>'
    )
    ext_link = (
        '<?xml version="1.0" encoding="UTF-8"?><externalLink xmlns="http://schemas.openxmlformats.org/'
        'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<externalBook r:id="rId1"><sheetNames><sheetName val="Sheet1"/></sheetNames><sheetDataSet>'
        '<sheetData sheetId="0"/></sheetDataSet></externalBook></externalLink>'
    )

    def workbook(x):
        return x.replace(
            "</sheets>", '</sheets><externalReferences><externalReference r:id="rIdX1"/></externalReferences>'
        )

    def wb_rels(x):
        return x.replace(
            "</Relationships>",
            '<Relationship Id="rIdX1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'externalLink" Target="externalLinks/externalLink1.xml"/></Relationships>',
        )

    def content_types(x):
        return x.replace(
            "</Types>",
            '<Override PartName="/xl/externalLinks/externalLink1.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/></Types>',
        )

    return {
        "external link part": rewrite(
            micro,
            tmp_path / "linked.xlsx",
            {
                embed: formula("[1]Sheet1!$A$1"),
                "xl/workbook.xml": workbook,
                "xl/_rels/workbook.xml.rels": wb_rels,
                "[Content_Types].xml": content_types,
            },
            {
                "xl/externalLinks/externalLink1.xml": ext_link.encode(),
                "xl/externalLinks/_rels/externalLink1.xml.rels": ext_rels.encode(),
            },
        ),
        "path in a formula": rewrite(
            micro, tmp_path / "path.xlsx", {embed: formula(f"'{secret.parent}/[secret.xlsx]Sheet1'!$A$1")}
        ),
        "DDE": rewrite(micro, tmp_path / "dde.xlsx", {embed: formula("cat|'" + str(secret) + "'!$A$1")}),
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_a_book_that_links_outside_itself_is_refused_before_any_engine_reads_the_target(
    micro, secret, tmp_path, engine
):
    before = os.stat(secret).st_atime
    for how, path in linked_books(micro, secret, tmp_path).items():
        code, out, err = run_check(path, "--engine", engine)
        assert code == 2 and out == "", (how, out, err)
        assert len(err.strip().splitlines()) == 1 and "refus" in err, (how, err)
        assert "987654" not in out + err, how
    assert os.stat(secret).st_atime == before  # nothing opened the secret workbook


# ------------------------------------------------------------------ a teacher's token edits


def teacher_edit(src: Path, dst: Path, texts: dict[str, object]) -> Path:
    wb = openpyxl.load_workbook(src)
    for cell, value in texts.items():
        wb["Prompt"][cell] = value
    wb.save(dst)
    return dst


@pytest.mark.parametrize("engine", ["fast", pytest.param("libreoffice", marks=pytest.mark.libreoffice)])
@pytest.mark.slow
def test_a_number_or_a_formula_typed_into_a_token_cell_is_the_token_the_book_computes_with(micro, tmp_path, engine):
    vocab = openpyxl.load_workbook(micro)["vocab"]
    words = [vocab.cell(row=r, column=2).value for r in range(1, 264)]
    assert "2" in words and words[99] not in ("2", "t", "h")
    edited = teacher_edit(micro, tmp_path / "teacher.xlsx", {"B7": 2, "B8": "=vocab!B100"})
    original, report = check_book(micro, engine="fast"), check_book(edited, engine=engine)
    assert report.passed, [s for s in report.stages if not s.passed][:2]
    # the ids the book computed are those of "2" and of vocab row 100, and the prediction moved with them
    from sheetgpt.engine import recompute

    values = recompute(engine, edited, read_workbook(edited))
    assert values.value("Prompt", "C7") == words.index("2") and values.value("Prompt", "C8") == 99
    before = {s.stage: s for s in original.stages}
    assert before["prompt.ids"].passed and report.stages[0].stage == "prompt.ids"
    old = recompute("fast", micro, read_workbook(micro)).value("Predict", "C5")
    assert values.value("Predict", "C5") != old


# ------------------------------------------------------------------ the formulas engine's estimate


@pytest.mark.slow
def test_the_formulas_engine_prints_its_estimate_before_it_goes_ahead(micro):
    from sheetgpt.engine import formulas_engine

    n, seconds, nbytes = formulas_engine.estimate(read_workbook(micro))
    code, out, err = run_check(micro, "--engine", "formulas")
    assert code == 0, (out, err)
    assert f"--engine formulas: {n:,} cells, about {seconds:.0f} s and {nbytes / (1 << 30):.1f} GB (estimated)" in err
    assert out.strip().splitlines()[-1].startswith("PASS")
