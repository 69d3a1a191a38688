"""Gnumeric as an engine (sheetgpt.engine.gnumeric), and books re-saved by other apps still check.

Gnumeric 1.12.55 (Debian 12's ``gnumeric``) recomputes with ``ssconvert --recalc``; LibreOffice 7.4
re-saves with ``soffice --headless --convert-to xlsx``; openpyxl re-saves with load/save. The books
are the default bundled book (its typed prompt tokenized in the book), the --no-typed-prompt book
and books of the test fixture shapes.
"""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from click.testing import CliRunner

from sheetgpt import a1
from sheetgpt.check import check_book, read_inputs
from sheetgpt.cli import main
from sheetgpt.engine import gnumeric, libreoffice, recompute
from sheetgpt.engine.reader import read_workbook
from sheetgpt.engine.values import Values


def run(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(map(str, args)))
    assert not isinstance(result.exception, (AssertionError, KeyError, TypeError, ValueError)), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """The default bundled book (typed prompt) and the --no-typed-prompt one, built by the CLI."""
    d = tmp_path_factory.mktemp("bundled")
    out = {}
    for name, extra in (("default", []), ("no-typed", ["--no-typed-prompt"])):
        code, stdout, stderr = run("build", "-o", d / f"{name}.xlsx", *extra)
        assert code == 0, (stdout, stderr)
        out[name] = d / f"{name}.xlsx"
    return out


def assert_passes(path: Path, engine: str) -> None:
    report = check_book(path, engine=engine)
    failed = [s for s in report.stages if not s.passed]
    assert report.passed, failed[:3]


# ------------------------------------------------------------------ the engine


def test_a_missing_ssconvert_is_one_line_with_the_install_command(book, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssconvert on it
    monkeypatch.delenv("SHEETGPT_SSCONVERT", raising=False)
    code, out, err = run("check", book("micro").path, "--engine", "gnumeric")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "apt-get install gnumeric" in err


@pytest.mark.parametrize("name", ["default", "no-typed"])
@pytest.mark.gnumeric
def test_gnumeric_proves_the_bundled_books(bundled, name):
    assert_passes(bundled[name], "gnumeric")


@pytest.mark.parametrize("shape", ["micro", "one-head", "odd"])
@pytest.mark.gnumeric
def test_gnumeric_proves_the_fixture_shapes(book, shape):
    assert_passes(book(shape, "the cat sat").path, "gnumeric")


@pytest.mark.gnumeric
def test_gnumeric_really_recalculates_and_returns_full_doubles(book, tmp_path):
    path = resave_openpyxl(book("micro").path, tmp_path)  # no cached values at all: Gnumeric must compute
    values = gnumeric.recalculate(path)
    assert isinstance(values, Values) and values.sentinel == 1 / 7
    assert libreoffice.SENTINEL_SHEET not in values.sheets
    fast = recompute("fast", path, read_workbook(path))
    a, b = values.numbers["Block 0"], fast.numbers["Block 0"]
    both = ~np.isnan(a) & ~np.isnan(b)
    assert both.sum() > 2000 and np.array_equal(~np.isnan(a), ~np.isnan(b))
    assert np.max(np.abs(a[both] - b[both])) <= 1e-14 * np.max(np.abs(b[both]))
    # full doubles, not numbers rounded to 15 significant digits as a spreadsheet shows them
    assert sum(float(f"{x:.15g}") != x for x in a[both].tolist()) > 1000


@pytest.mark.gnumeric
def test_a_gnumeric_timeout_is_one_line(book):
    code, out, err = run("check", book("micro").path, "--engine", "gnumeric", "--timeout", "0.001")
    assert code == 2 and "Gnumeric did not finish within 0.001 s" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ books re-saved by other apps


def resave_libreoffice(src: Path, d: Path) -> Path:
    out = d / "lo"
    out.mkdir()
    profile = d / "lo-profile"
    subprocess.run(
        [libreoffice.find_soffice(), f"-env:UserInstallation={profile.as_uri()}", "--headless", "--convert-to",
         "xlsx", "--outdir", str(out), str(src)],
        check=True, capture_output=True, timeout=600, env={**os.environ, "HOME": str(d)},
    )  # fmt: skip
    return out / src.name


def resave_gnumeric(src: Path, d: Path) -> Path:
    out = d / "gnumeric.xlsx"
    home = d / "gnumeric-home"
    home.mkdir()
    subprocess.run(
        [gnumeric.find_ssconvert(), str(src), str(out)],
        check=True, capture_output=True, timeout=600, env={**os.environ, "HOME": str(home)},
    )  # fmt: skip
    return out


def resave_openpyxl(src: Path, d: Path) -> Path:
    out = d / "openpyxl.xlsx"
    openpyxl.load_workbook(src).save(out)
    return out


APPS = {
    "libreoffice": pytest.param(resave_libreoffice, marks=pytest.mark.libreoffice, id="libreoffice"),
    "gnumeric": pytest.param(resave_gnumeric, marks=pytest.mark.gnumeric, id="gnumeric"),
    "openpyxl": pytest.param(resave_openpyxl, id="openpyxl"),
}
ENGINES = {
    "fast": pytest.param("fast", id="fast"),
    "libreoffice": pytest.param("libreoffice", marks=pytest.mark.libreoffice, id="lo-engine"),
    "gnumeric": pytest.param("gnumeric", marks=pytest.mark.gnumeric, id="gnumeric-engine"),
}


@pytest.mark.parametrize("engine", [*ENGINES.values(), pytest.param("formulas", marks=pytest.mark.slow)])
@pytest.mark.parametrize("resave", APPS.values())
def test_a_micro_book_resaved_by_another_app_still_checks(book, tmp_path, resave, engine):
    path = book("micro", "the cat sat").path
    assert_passes(resave(path, tmp_path), engine)


@pytest.mark.parametrize("engine", ENGINES.values())
@pytest.mark.parametrize("resave", APPS.values())
@pytest.mark.slow
def test_the_default_bundled_book_resaved_by_another_app_still_checks(bundled, tmp_path, resave, engine):
    assert_passes(resave(bundled["default"], tmp_path), engine)


@pytest.mark.libreoffice
def test_libreoffice_writes_true_as_a_function_and_the_fast_engine_reads_it(bundled, tmp_path):
    resaved = resave_libreoffice(bundled["default"], tmp_path)
    prompt = read_workbook(resaved).sheets["Prompt"]
    assert any("TRUE()" in text for _r, _c, text, _ref in prompt.formulas)  # LibreOffice 7.4 writes TRUE so
    report = check_book(resaved)
    assert all(s.passed for s in report.stages if s.tab == "Prompt" and s.stage != "cached")


def sheet_part(path: Path, sheet: str) -> str:
    """The zip member of a sheet, whatever order an app writes the attributes in."""
    with zipfile.ZipFile(path) as z:
        wb = z.read("xl/workbook.xml").decode()
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
    tag = re.search(rf'<(?:\w+:)?sheet [^>]*name="{re.escape(sheet)}"[^>]*>', wb).group()
    rid = re.search(r'r:id="([^"]+)"', tag).group(1)
    rel = next(r for r in re.findall(r"<Relationship [^>]*>", rels) if f'Id="{rid}"' in r)
    target = re.search(r'Target="([^"]+)"', rel).group(1)
    return target.lstrip("/") if target.startswith("/") else "xl/" + target


@pytest.mark.parametrize("resave", [APPS["libreoffice"], APPS["gnumeric"], APPS["openpyxl"]])
@pytest.mark.slow
def test_a_resaved_book_whose_formula_was_edited_names_the_cell(bundled, tmp_path, resave):
    resaved = resave(bundled["no-typed"], tmp_path)
    mean = read_inputs(read_workbook(bundled["no-typed"])).layout.region("h.0.ln_1.mean")
    r, c = mean.top + 1, mean.left  # the second token's layer-norm mean, from the layout
    where = a1.cell(r, c)
    text = [t for row, col, t, _ in read_workbook(resaved).sheets[mean.tab].formulas if (row, col) == (r, c)]
    assert text and text[0].startswith("AVERAGE(")
    part = sheet_part(resaved, mean.tab)
    edited = tmp_path / "edited.xlsx"
    with zipfile.ZipFile(resaved) as z, zipfile.ZipFile(edited, "w", zipfile.ZIP_DEFLATED) as out:
        for name in z.namelist():
            data = z.read(name)
            if name == part:
                xml = data.decode()
                new = re.sub(rf'(<c r="{where}"[^>]*>\s*<f[^>]*>)AVERAGE\(', r"\1SUM(", xml, count=1)
                assert new != xml
                data = new.encode()
            out.writestr(name, data)
    report = check_book(edited)
    first = next(s for s in report.stages if not s.passed)
    assert first.first_bad["cell"] == a1.where(mean.tab, r, c) and "SUM(" in first.first_bad["formula"]
